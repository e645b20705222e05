"""Every fixed sentence the offline dialogue says, in one place.

Why one module: the phone voice pre-renders these sentences at start-up (so they cost nothing
per call), and a reviewer can read everything the assistant may say verbatim on one page.
Sentences that depend on the deployment (the office's name, its services and offices) are
built by small functions from the catalog; :func:`fixed_phrases` lists them all.

Style: natural Dominican Spanish with "usted", short sentences (the phone voice is robotic;
short is clearer), one question at a time.
"""

from __future__ import annotations

from pipeline.brain.catalog import Catalog, join_es
from pipeline.sentences import SentenceSplitter

__all__ = ["fixed_phrases", "sentences"]

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
ASK_NAME = "¿A nombre de quién hago la cita? Dígame el nombre completo."
ASK_CEDULA = "¿Cuál es el número de cédula? Puede decirlo o marcarlo en el teclado."
ASK_PHONE = "¿A qué número de teléfono le podemos contactar?"
PHONE_TEN_DIGITS = (
    "El número debe tener diez dígitos, con el código de área. ¿Me lo repite, por favor?"
)
ASK_DAY = "¿Para qué día?"
ASK_WHEN = "¿Para qué día y a qué hora le gustaría?"
ASK_WHEN_MOVE = "¿Para qué día y a qué hora la quiere cambiar?"
ASK_OTHER_DAY = "¿Qué otro día le conviene?"
ASK_OTHER_DAY_AND_TIME = "¿Para qué otro día y hora la quiere?"
ASK_HOUR = "¿A qué hora le conviene?"
ASK_SANTO_DOMINGO = "¿En Santo Domingo Centro o en Santo Domingo Este?"
NO_SLOTS = "No encontré horarios disponibles. ¿Quiere probar con otro día?"
WHICH_ONE = "¿Cuál prefiere?"
DOES_IT_SUIT = "¿Le sirve?"
ASK_WHAT_TO_CHANGE = "¿Qué desea cambiar: el día y la hora, la oficina, el nombre o la cédula?"
IS_IT_RIGHT = "¿Está correcto?"
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
OFFER_BOOKING = "¿Desea que le reserve una cita?"
BACK_TO_BOOKING = "Volviendo a su cita:"

# --- handing over and ending ------------------------------------------------------------------
OFFER_AGENT = "¿Desea que le comunique con un agente?"
TRANSFERRING = "Con gusto. Le comunico con un agente, por favor espere un momento."
TRANSFERRING_LOST = (
    "Disculpe, no le estoy entendiendo bien. Le comunico con un agente, por favor espere un "
    "momento."
)


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


def sentences(text: str) -> list[str]:
    """A reply cut where the call's voice cuts it (the session's own sentence splitter), so
    that pre-rendered audio is found under the same text."""
    splitter = SentenceSplitter()
    return splitter.push(text) + splitter.flush()


def fixed_phrases(catalog: Catalog, office_name: str) -> list[str]:
    """Every sentence said verbatim, one per entry, without duplicates, in a stable order."""
    texts: list[str] = [greeting(s, office_name) for s in SALUTES]
    texts += [v for k, v in globals().items() if k.isupper() and isinstance(v, str)]
    texts.append(goodbye(office_name))
    if catalog.services:
        texts.append(ask_service(catalog))
        for service in catalog.services:
            offices = catalog.offices_for(service.code)
            if len(offices) > 1:
                texts.append(ask_office([o.short for o in offices]))
    out: dict[str, None] = {}
    for text in texts:
        for sentence in sentences(text):
            out.setdefault(sentence, None)
    return list(out)
