// Calendario: one office's appointments by day or week, with each slot's capacity, and the
// actions staff take on a booking (mark attended / no-show, move, cancel). Every action goes
// through the API, which writes the audit log and notifies the external booking system.

import { get, getConfig, post } from "../api.js";
import { field, formatCedula, h, message, replace } from "../dom.js";

const ATTENDANCE = { attended: "Asistió", no_show: "No asistió" };
const WEEKDAY = new Intl.DateTimeFormat("es-DO", { weekday: "long", day: "numeric", month: "long", timeZone: "UTC" });
const SHORT_DAY = new Intl.DateTimeFormat("es-DO", { weekday: "short", day: "numeric", month: "short", timeZone: "UTC" });

let pendingNotice = null; // shown by the next render after an action reloads the page

function isoDay(date) {
  return date.toISOString().slice(0, 10);
}

function addDays(iso, n) {
  const [y, m, d] = iso.split("-").map(Number);
  return isoDay(new Date(Date.UTC(y, m - 1, d + n)));
}

function dayName(iso, fmt = WEEKDAY) {
  const [y, m, d] = iso.split("-").map(Number);
  const text = fmt.format(new Date(Date.UTC(y, m - 1, d)));
  return text.charAt(0).toUpperCase() + text.slice(1);
}

function mondayOf(iso) {
  const [y, m, d] = iso.split("-").map(Number);
  const wd = new Date(Date.UTC(y, m - 1, d)).getUTCDay(); // 0 = Sunday
  return addDays(iso, wd === 0 ? -6 : 1 - wd);
}

/** "08:30" in the office's time, read from the offset the API sends ("…T08:30:00-04:00"). */
function slotTime(iso) {
  return iso.slice(11, 16);
}

function todayInOffice(tz) {
  try {
    return new Intl.DateTimeFormat("en-CA", { timeZone: tz || undefined }).format(new Date());
  } catch {
    return isoDay(new Date());
  }
}

function meter(booked, capacity) {
  const fill = h("span");
  fill.style.width = `${capacity ? Math.min(100, (100 * booked) / capacity) : 0}%`;
  return h("div", { class: "cal-meter", "aria-hidden": "true" }, fill);
}

export async function renderCalendar(main, { params, ctx }) {
  const today = todayInOffice(getConfig().timezone);
  const view = params.get("vista") === "semana" ? "semana" : "dia";
  const day = /^\d{4}-\d{2}-\d{2}$/.test(params.get("fecha") || "") ? params.get("fecha") : today;
  const start = view === "semana" ? mondayOf(day) : day;
  const office = params.get("oficina") || "";
  const go = (changes) => ctx.navigate("/calendario",
    { oficina: office, vista: view, fecha: day, ...changes });

  const status = h("div", { id: "cal-status", "aria-live": "polite" });
  const body = h("div", {}, h("p", { class: "loading" }, "Cargando…"));
  replace(main, h("h1", {}, "Calendario de citas"), status, body);
  const say = (kind, text) => replace(status, text ? message(kind, text) : null);

  const data = await get("/api/calendar", { office, start, days: view === "semana" ? 7 : 1 });
  if (!ctx.alive()) return null;

  const officeSelect = h("select", { id: "cal-oficina", name: "oficina" },
    data.offices.map((o) => h("option", { value: o.code, selected: o.code === data.office.code }, o.name)));
  officeSelect.addEventListener("change", () => go({ oficina: officeSelect.value }));
  const viewSelect = h("select", { id: "cal-vista", name: "vista" },
    h("option", { value: "dia", selected: view === "dia" }, "Día"),
    h("option", { value: "semana", selected: view === "semana" }, "Semana"));
  viewSelect.addEventListener("change", () => go({ vista: viewSelect.value }));
  const dateInput = h("input", { type: "date", id: "cal-fecha", name: "fecha", value: day });
  dateInput.addEventListener("change", () => dateInput.value && go({ fecha: dateInput.value }));
  const step = view === "semana" ? 7 : 1;
  const controls = h("div", { class: "cal-controls" },
    field("cal-oficina", "Oficina", officeSelect),
    field("cal-vista", "Vista", viewSelect),
    field("cal-fecha", "Fecha", dateInput),
    h("div", { class: "cal-nav" },
      h("button", { type: "button", class: "button", onclick: () => go({ fecha: addDays(day, -step) }) },
        view === "semana" ? "← Semana anterior" : "← Día anterior"),
      h("button", { type: "button", class: "button", onclick: () => go({ fecha: today }) }, "Hoy"),
      h("button", { type: "button", class: "button", onclick: () => go({ fecha: addDays(day, step) }) },
        view === "semana" ? "Semana siguiente →" : "Día siguiente →")));

  const totalCap = data.days.reduce((n, d) => n + d.capacity, 0);
  const totalBooked = data.days.reduce((n, d) => n + d.booked, 0);
  const summary = h("p", { class: "muted" },
    `${data.office.name}: ${totalBooked} de ${totalCap} cupos ocupados ` +
    (view === "semana" ? `en la semana del ${dayName(start, SHORT_DAY)}.` : `el ${dayName(start).toLowerCase()}.`));

  const dialog = h("dialog", { class: "cal-dialog", "aria-labelledby": "cal-dialog-title" });
  const refresh = (text) => {
    if (dialog.open) dialog.close();
    pendingNotice = text || null;
    go({});
  };

  function openActions(booking, slot) {
    const dayOfSlot = slot.starts_at.slice(0, 10);
    const canMark = dayOfSlot <= today;
    const canChange = !slot.past;
    const note = h("div", { "aria-live": "polite" });
    const fail = (err) => { if (err?.status !== 401) replace(note, message("error", err.message)); };
    const act = async (path, json, done) => {
      try {
        await post(`/api/bookings/${encodeURIComponent(booking.code)}/${path}`, json);
        refresh(done);
      } catch (err) {
        fail(err);
      }
    };
    const buttons = [];
    if (canMark) {
      buttons.push(
        h("button", { type: "button", class: "button button-primary",
          onclick: () => act("attendance", { attendance: "attended" }, `Cita ${booking.code}: asistió.`) }, "Marcar «Asistió»"),
        h("button", { type: "button", class: "button",
          onclick: () => act("attendance", { attendance: "no_show" }, `Cita ${booking.code}: no asistió.`) }, "Marcar «No asistió»"));
      if (booking.attendance) {
        buttons.push(h("button", { type: "button", class: "button",
          onclick: () => act("attendance", { attendance: null }, `Cita ${booking.code}: se quitó la marca de asistencia.`) },
        "Quitar la marca"));
      }
    }
    let moveForm = null;
    if (canChange) {
      buttons.push(h("button", { type: "button", class: "button button-danger",
        onclick: () => {
          if (window.confirm(`¿Cancelar la cita ${booking.code} de ${booking.citizen_name}? Se libera el cupo.`)) {
            act("cancel", undefined, `Se canceló la cita ${booking.code}.`);
          }
        } }, "Cancelar cita"));
      const moveDate = h("input", { type: "date", id: "mv-fecha", value: dayOfSlot < today ? today : dayOfSlot, min: today });
      const moveSlot = h("select", { id: "mv-horario", name: "slot" }, h("option", { value: "" }, "Elija una fecha"));
      const loadSlots = async () => {
        replace(moveSlot, h("option", { value: "" }, "Cargando…"));
        try {
          const cal = await get("/api/calendar", { office: data.office.code, start: moveDate.value, days: 1 });
          const free = cal.days[0].slots.filter((s) => !s.past && s.booked < s.capacity && s.id !== slot.id &&
            (!s.service || s.service === booking.service));
          replace(moveSlot, free.length
            ? free.map((s) => h("option", { value: String(s.id) }, `${slotTime(s.starts_at)} (${s.capacity - s.booked} libres)`))
            : h("option", { value: "" }, "No hay horarios libres ese día"));
        } catch (err) {
          fail(err);
        }
      };
      moveDate.addEventListener("change", loadSlots);
      moveForm = h("form", { class: "move-form" },
        h("fieldset", {}, h("legend", {}, `Cambiar de horario (${data.office.name})`),
          field("mv-fecha", "Nueva fecha", moveDate),
          field("mv-horario", "Nuevo horario", moveSlot),
          h("button", { type: "submit", class: "button" }, "Mover la cita")));
      moveForm.addEventListener("submit", (event) => {
        event.preventDefault();
        if (!moveSlot.value) { replace(note, message("error", "Elija un horario libre.")); return; }
        act("reschedule", { slot_id: Number(moveSlot.value) },
          `La cita ${booking.code} se movió al ${moveDate.value} a las ${moveSlot.selectedOptions[0].textContent.slice(0, 5)}.`);
      });
      loadSlots();
    }
    replace(dialog,
      h("h2", { id: "cal-dialog-title" }, `Cita ${booking.code}`),
      h("p", {}, h("strong", {}, booking.citizen_name), ` · ${booking.service_name} · ${dayName(dayOfSlot)} a las ${slotTime(slot.starts_at)}`),
      h("p", { class: "muted" }, `Cédula ${formatCedula(booking.cedula)}${booking.phone ? ` · Tel. ${booking.phone}` : ""}` +
        (booking.attendance ? ` · ${ATTENDANCE[booking.attendance]}` : "")),
      booking.call_sid ? h("p", {}, h("a", { href: `#/llamadas/${encodeURIComponent(booking.call_sid)}` }, "Ver la llamada en que se reservó")) : null,
      canMark ? null : h("p", { class: "muted" }, "La asistencia se marca el día de la cita."),
      note,
      h("div", { class: "dialog-actions" }, buttons),
      moveForm,
      h("div", { class: "dialog-actions" },
        h("button", { type: "button", class: "button button-quiet", onclick: () => dialog.close() }, "Cerrar")));
    dialog.showModal();
  }

  function bookingItem(b, slot) {
    return h("li", { class: `cal-booking cal-booking-${b.attendance || "pending"}`, dataset: { code: b.code } },
      h("span", { class: "who" }, b.citizen_name),
      h("span", { class: "muted" }, b.service_name),
      b.attendance ? h("span", { class: "badge" }, ATTENDANCE[b.attendance]) : null,
      h("span", { class: "actions" },
        h("button", { type: "button", class: "button button-small",
          "aria-label": `Acciones para la cita de ${b.citizen_name} (${b.code})`,
          onclick: () => openActions(b, slot) }, "Acciones")));
  }

  function slotItem(slot) {
    const full = slot.booked >= slot.capacity;
    return h("li", { class: `cal-slot${full ? " cal-full" : ""}${slot.past ? " cal-past" : ""}`,
      dataset: { slotId: String(slot.id) } },
    h("div", {},
      h("div", { class: "cal-slot-head" },
        h("span", { class: "cal-slot-time" }, slotTime(slot.starts_at)),
        h("span", { class: "cal-capacity" }, full ? `Completo (${slot.booked}/${slot.capacity})` : `${slot.booked}/${slot.capacity} ocupados`)),
      meter(slot.booked, slot.capacity)),
    slot.bookings.length ? h("ul", { class: "cal-bookings", "aria-label": `Citas de las ${slotTime(slot.starts_at)}` },
      slot.bookings.map((b) => bookingItem(b, slot))) : null);
  }

  const days = data.days.map((d) => h("section", {
    class: `cal-day${d.day === today ? " cal-day-today" : ""}`, "aria-label": dayName(d.day), dataset: { day: d.day } },
  h("h2", {}, dayName(d.day, view === "semana" ? SHORT_DAY : WEEKDAY)),
  h("p", { class: "cal-capacity" }, d.capacity ? `${d.booked} de ${d.capacity} cupos ocupados` : "Cerrado"),
  d.slots.length ? h("ul", { class: "cal-slots" }, d.slots.map(slotItem)) : h("p", { class: "cal-empty-day" }, "No hay horarios este día.")));

  if (pendingNotice) {
    say("ok", pendingNotice);
    pendingNotice = null;
  }
  replace(body, controls, summary,
    h("div", { class: view === "semana" ? "cal-week" : "cal-day-view" }, days), dialog);
  return () => { if (dialog.open) dialog.close(); };
}
