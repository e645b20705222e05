"""Every fixed sentence the offline dialogue says, in one place.

Why one module: the phone voice pre-renders these sentences at start-up (so they cost nothing
per call), and a reviewer can read everything the assistant may say verbatim on one page.
Sentences that depend on the deployment (the office's name, its services and offices) are
built by small functions from the catalog; :func:`fixed_phrases` lists them all.

Style: natural Dominican Spanish with "usted", short sentences (the phone voice is robotic;
short is clearer), one question at a time.
"""

from __future__ import annotations

import re
from datetime import time

from pipeline.brain.catalog import Catalog, CatalogOffice, join_es
from pipeline.brain.spanish_dates import speak_time
from pipeline.brain.spanish_text import normalize
from pipeline.brain.spoken import speak_digits
from pipeline.sentences import SentenceSplitter

__all__ = ["fixed_phrases", "office_contact", "sentences"]

# --- openings and small talk ------------------------------------------------------------------
SALUTES = ("Buenos días", "Buenas tardes", "Buenas noches")
HOW_CAN_I_HELP = "¿En qué le puedo ayudar?"
WHAT_ELSE = "¿En qué más le puedo ayudar?"
ANYTHING_ELSE = "¿Le puedo ayudar en algo más?"
STILL_THERE = "¿Sigue ahí? Dígame en qué le puedo ayudar."
HELLO = "Hola, con gusto le atiendo."
YOU_ARE_WELCOME = "Con gusto."
GO_AHEAD = "Claro, dígame."
OK = "De acuerdo."
VERY_WELL = "Muy bien."
CAPABILITIES = (
    "Puedo darle información sobre trámites, requisitos, costos, horarios y oficinas, y "
    "reservar, cambiar o cancelar citas."
)
CANNOT_HELP_WITH_THAT = "Disculpe, con eso no le puedo ayudar."
WHAT_DO_YOU_NEED = "¿Qué necesita?"
NOT_UNDERSTOOD = "Disculpe, no le entendí."
BAD_DIGITS = "No reconocí esos números."
BAD_KEY = "No reconocí esa tecla."

# --- booking ----------------------------------------------------------------------------------
BOOKING_START = "Con gusto le ayudo con la cita."
ASK_NAME = "¿A nombre de quién hago la cita? Necesito el nombre completo."
ASK_SURNAME = "¿Y su apellido?"
ASK_CEDULA = "¿Me dice su número de cédula? Puede decirlo o marcarlo en el teclado."
ASK_PHONE = "¿A qué número de teléfono le podemos contactar?"
PHONE_TEN_DIGITS = (
    "El número debe tener diez dígitos, con el código de área. ¿Me lo repite, por favor?"
)
ASK_DAY = "¿Para qué día sería?"
ASK_WHEN = "¿Para qué día y a qué hora le gustaría?"
ASK_WHEN_MOVE = "¿Para qué día y a qué hora la quiere cambiar?"
ASK_OTHER_DAY = "¿Qué otro día le conviene?"
ASK_OTHER_DAY_AND_TIME = "¿Para qué otro día y hora la quiere?"
ASK_HOUR = "¿A cuál hora le conviene?"
ASK_SANTO_DOMINGO = "¿En Santo Domingo Centro o en Santo Domingo Este?"
NO_SLOTS = "No encontré horarios disponibles. ¿Quiere probar con otro día?"
WHICH_ONE = "¿Cuál le conviene?"
DOES_IT_SUIT = "¿Le conviene?"
ASK_WHAT_TO_CHANGE = "¿Qué desea cambiar: el día y la hora, la oficina, el nombre, o su cédula?"
IS_IT_RIGHT = "¿Está correcto?"
IS_IT_RIGHT_NOW = "¿Ahora sí está correcto?"
ARRIVE_EARLY = "Llegue unos diez minutos antes, con su cédula."
TRY_AGAIN = "¿Lo intento de nuevo?"
NOT_BOOKING = "De acuerdo, no hago la reserva."
CEDULA_NO_CODE = "No se preocupe. Dígame su número de cédula, o márquelo en el teclado."
CEDULA_MINOR = (
    "Si la cita es para un menor de edad, se reserva con la cédula del padre, la madre o el "
    "tutor. ¿Me dice ese número?"
)
CEDULA_ELEVEN = "La cédula tiene once dígitos. ¿Me la repite completa, por favor?"
CEDULA_TOO_LONG = "Escuché más de once dígitos. ¿Me repite la cédula, por favor?"
FROM_EIGHT = "Las citas empiezan a las ocho de la mañana."
UNTIL_HALF_PAST_THREE = "Las citas son hasta las tres y media de la tarde."
SATURDAY_UNTIL = "Los sábados las citas son hasta las once y media de la mañana."
CANNOT_BOOK_HERE = (
    "En este momento no puedo gestionar citas por esta vía. ¿Desea que le comunique con un agente?"
)

# --- existing appointments --------------------------------------------------------------------
ASK_CODE_OR_CEDULA = (
    "¿Me dice el código de confirmación de la cita? Si no lo tiene, dígame su número de cédula."
)
ASK_CODE_OR_CEDULA_AGAIN = (
    "Entonces, ¿me dice el código de confirmación de la cita? Si no lo tiene, dígame su "
    "número de cédula."
)
ASK_CODE_OR_CEDULA_SHORT = "¿Me dice el código de la cita o su número de cédula?"
ASK_CEDULA_TO_FIND = "¿Me dice su número de cédula para buscar sus citas?"
REPEAT_CODE_OR_CEDULA = "¿Me lo repite, por favor? Puede darme el código o la cédula."
NO_APPOINTMENTS = "No encontré citas activas."
STILL_ON = "De acuerdo, su cita sigue en pie."

# --- questions --------------------------------------------------------------------------------
OFFER_BOOKING = "¿Quiere que le haga una cita?"
BACK_TO_BOOKING = "Volviendo a su cita:"

# --- handing over and ending ------------------------------------------------------------------
OFFER_AGENT = "¿Desea que le comunique con un agente?"
TRANSFERRING = "Con gusto. Le comunico con un agente, por favor espere un momento."
TRANSFERRING_LOST = (
    "Disculpe, no le estoy entendiendo bien. Le comunico con un agente, por favor espere un "
    "momento."
)


# --- recovering from a miss: a shorter question, then choices, then another way -------------
# The question asked again after a miss, shorter than the first time (never verbatim).
SHORT_QUESTIONS = {
    "service": "¿Qué trámite necesita?",
    "office": "¿En qué oficina la quiere?",
    "when": "¿Qué día le conviene?",
    "name": "¿Cuál es su nombre completo?",
    "cedula": "¿Cuál es su número de cédula?",
    "lookup_cedula": "¿Me dice su número de cédula?",
    "phone": "¿A qué número le podemos llamar?",
    "phone_confirm": "¿Le llamamos al teléfono desde el que llama? Responda sí o no.",
    "code_or_cedula": "¿Me dice el código de la cita o su cédula?",
    "change_what": "¿Qué desea cambiar: el día, la oficina, el nombre, o su cédula?",
    "confirm_booking": "¿Hago la reserva? Responda sí o no.",
    "confirm_reschedule": "¿Hago el cambio? Responda sí o no.",
    "confirm_cancel": "¿Cancelo la cita? Responda sí o no.",
    "confirm_target": "¿Es esa la cita? Responda sí o no.",
    "slot_single": "¿Le conviene esa hora? Responda sí o no.",
    "slot_choice": "¿Cuál de esos horarios prefiere?",
    "pick_booking": "¿Cuál de las citas? Diga la primera o la segunda.",
    "anything_else": "¿Necesita algo más? Responda sí o no.",
    "offer_booking": "¿Le hago la cita? Responda sí o no.",
    "offer_transfer": "¿Le paso con un agente? Responda sí o no.",
}
NOT_HEARD = "Disculpe, no le pude oír."
NOT_CAUGHT = "Disculpe, no le entendí bien."
PRESS_YES_NO = "Marque 1 para sí, o 2 para no."
GO_ON_DIGITS = "Le escucho. Dígame los números, por favor."
CEDULA_AGAIN_FULL = "¿Me repite la cédula completa, por favor? Son once dígitos."
PRESS_CEDULA = "Puede marcar su cédula en el teclado: los once dígitos."
PRESS_PHONE = "Puede marcar el número en el teclado, con el código de área."
PRESS_CODE_OR_CEDULA = "Puede marcar su cédula en el teclado: los once dígitos."
# The keypad offered once more in other words: the same sentence is never heard three times.
PRESS_CEDULA_AGAIN = "Si le resulta más fácil, marque los once dígitos de su cédula."
PRESS_PHONE_AGAIN = "Si le resulta más fácil, marque los diez dígitos del teléfono."
SAY_NAME_SLOWLY = "Dígame solo su nombre y su apellido, despacio, por favor."
PRESS_SLOT = "Diga la primera, la segunda o la tercera, o marque 1, 2 o 3."
FIRST_FREE_SLOTS = "Le digo los primeros horarios libres."
ASK_CHANGE_MENU = "Marque 1 para el día, 2 para la oficina, 3 para el nombre o 4 para la cédula."
LINE_UNCLEAR = "Disculpe, no le estoy entendiendo bien."
NO_AGENT = "En este momento no tengo un agente disponible para pasarle la llamada."
CANNOT_BOOK_NO_AGENT = "En este momento no puedo gestionar citas por esta vía."
CALL_BACK = "Puede llamarnos de nuevo en horario de oficina."
KEEP_HELPING = "Si quiere, seguimos por aquí."
SHORT_CAPABILITIES = "Puedo darle información o hacerle una cita."
NICE_TO_MEET = "Mucho gusto."
WANT_MORE_INFO = "¿Quiere saber algo más?"
TAKING_FIRST_SLOT = "Le aparto el primer horario; si no le conviene, lo cambiamos al final."


def choices_menu(labels: list[str], lead: str = "") -> str:
    """ "¿Es para cédula, pasaporte o licencia? Diga el nombre o marque 1, 2 o 3." — or, with
    more options than a caller can keep in mind, "Marque 1 para …, 2 para …"."""
    keys = [str(i + 1) for i in range(len(labels))]
    if len(labels) <= 4:
        return f"¿Es {lead}{join_es(labels, 'o')}? Diga el nombre o marque {join_es(keys, 'o')}."
    pairs = [f"{k} para {label}" for k, label in zip(keys, labels, strict=True)]
    return f"Marque {join_es(pairs, 'o')}. O diga el nombre."


def short_choice(labels: list[str]) -> str:
    """ "¿Santo Domingo Centro o Este?": two or three options, their shared words said once."""
    split = [label.split() for label in labels]
    common = 0
    while (
        all(len(w) > common + 1 for w in split)
        and len({tuple(w[: common + 1]) for w in split}) == 1
    ):
        common += 1
    rest = [" ".join(w[common:]) for w in split]
    head = " ".join(split[0][:common])
    return f"¿{head + ' ' if head else ''}{join_es(rest, 'o')}?"


def booking_under_way(service: str) -> str:
    return f"Sí, le estoy haciendo la cita de {service}."


def greeting(salute: str, office_name: str) -> str:
    return (
        f"{salute}, gracias por llamar a {office_name}. Le habla Taína, su asistente virtual. "
        f"{HOW_CAN_I_HELP}"
    )


def goodbye(office_name: str) -> str:
    return f"Gracias por llamar a {office_name}. ¡Que tenga un buen día!"


def ask_service(catalog: Catalog) -> str:
    names = [s.spoken for s in catalog.services[:4]]
    return f"¿Para qué trámite es la cita? Por ejemplo: {join_es(names, 'o')}."


def ask_office(offices: list[str]) -> str:
    return f"¿En qué oficina le queda mejor: {join_es(offices, 'o')}?"


def service_labels(catalog: Catalog) -> list[str]:
    """The shortest name of each service, for a menu ("cédula", "antecedentes")."""
    return [_short_name(s.aliases, f"{s.name} {s.spoken}") for s in catalog.services]


def office_labels(catalog: Catalog, codes: list[str]) -> list[str]:
    offices = [catalog.office(c) for c in codes]
    return [o.short for o in offices if o is not None]


def _short_name(aliases: tuple[str, ...], written: str) -> str:
    """The shortest alias, with the accents of the written name ("cedula" → "cédula")."""
    accents = {normalize(w): w.lower() for w in re.findall(r"[\wáéíóúñü]+", written)}
    own = [a for a in aliases if all(normalize(w) in accents for w in a.split())]
    shortest = min(own or aliases or (written,), key=len)
    return " ".join(accents.get(normalize(w), w) for w in shortest.split())


def office_contact(office: CatalogOffice) -> str:
    """ "El teléfono de Santo Domingo Centro es ocho cero nueve, cinco cinco cinco, cero uno
    cero cero. Atiende de lunes a viernes, de ocho de la mañana a cuatro de la tarde…" """
    groups = [g for g in office.phone.replace(" ", "-").split("-") if g] if office.phone else []
    number = ", ".join(speak_digits(g) for g in groups)
    text = f"El teléfono de la oficina de {office.short} es {number}."
    spans = []
    for days, span in office.hours.items():
        try:
            start, end = (time.fromisoformat(x) for x in span.split("-"))
        except ValueError:
            continue
        spans.append(f"{_days(days)}, de {_clock(start)} a {_clock(end)}")
    if spans:
        text += f" Atiende {join_es(spans)}."
    return text


def _days(days: str) -> str:
    """ "lunes a viernes" → "de lunes a viernes"; "sábado" → "los sábados"."""
    if " a " in days:
        return f"de {days}"
    return f"los {days}s" if not days.endswith("s") else f"los {days}"


def _clock(at: time) -> str:
    """ "ocho de la mañana", without the "a las" of an appointment time."""
    spoken = speak_time(at)
    for lead in ("a las ", "a la "):
        if spoken.startswith(lead):
            return spoken[len(lead) :] if lead == "a las " else spoken[len("a la ") :]
    return spoken


def sentences(text: str) -> list[str]:
    """A reply cut where the call's voice cuts it (the session's own sentence splitter), so
    that pre-rendered audio is found under the same text."""
    splitter = SentenceSplitter()
    return splitter.push(text) + splitter.flush()


def fixed_phrases(catalog: Catalog, office_name: str) -> list[str]:
    """Every sentence said verbatim, one per entry, without duplicates, in a stable order."""
    texts: list[str] = [greeting(s, office_name) for s in SALUTES]
    texts += [v for k, v in globals().items() if k.isupper() and isinstance(v, str)]
    texts += list(SHORT_QUESTIONS.values())
    texts.append(goodbye(office_name))
    if catalog.services:
        texts.append(ask_service(catalog))
        for service in catalog.services:
            offices = catalog.offices_for(service.code)
            if len(offices) > 1:
                texts.append(ask_office([o.short for o in offices]))
                texts.append(choices_menu([o.short for o in offices], "en "))
        texts.append(choices_menu(service_labels(catalog), "para "))
    texts += [booking_under_way(s.spoken) for s in catalog.services]
    for office in catalog.offices:
        if office.phone:
            texts.append(office_contact(office))
    sd = [o.short for o in catalog.offices if o.code in ("SDC", "SDE")]
    if len(sd) == 2:
        texts.append(short_choice(sd))
    out: dict[str, None] = {}
    for text in texts:
        for sentence in sentences(text):
            out.setdefault(sentence, None)
    return list(out)
