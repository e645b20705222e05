// Reservas: appointments booked by phone or web, with filters.

import { get } from "../api.js";
import {
  BOOKING_STATUSES,
  field,
  formatCedula,
  formatDateTime,
  formValues,
  h,
  label,
  pager,
  replace,
  select,
  table,
} from "../dom.js";
import { csvButton } from "../download.js";

const PAGE_SIZE = 50;

let cachedNames = null;

/** Offices and services by name ({code: name}), so staff filter without knowing codes. */
async function bookingNames() {
  if (!cachedNames) {
    const data = await get("/api/bookings/options");
    const byCode = (list) => Object.fromEntries(list.map((x) => [x.code, x.name]));
    cachedNames = { offices: byCode(data.offices), services: byCode(data.services) };
  }
  return cachedNames;
}

export async function renderBookings(main, { params, ctx }) {
  const p = Object.fromEntries(params.entries());
  const page = Math.max(1, Number(p.pagina) || 1);
  const names = await bookingNames();
  if (!ctx.alive()) return;
  const form = h(
    "form",
    { class: "filters", role: "search", "aria-label": "Filtrar reservas" },
    field("b-dia", "Día de la cita", h("input", { type: "date", id: "b-dia", name: "dia", value: p.dia })),
    field("b-oficina", "Oficina", select("oficina", "b-oficina", names.offices, p.oficina)),
    field("b-tramite", "Trámite", select("tramite", "b-tramite", names.services, p.tramite)),
    field("b-estado", "Estado", select("estado", "b-estado", BOOKING_STATUSES, p.estado)),
    h("div", { class: "filter-actions" },
      h("button", { type: "submit", class: "button button-primary" }, "Filtrar"),
      h("button", { type: "button", class: "button", onclick: () => ctx.navigate("/reservas") }, "Limpiar")),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    ctx.navigate("/reservas", formValues(form));
  });
  const results = h("div", { "aria-live": "polite" }, h("p", { class: "loading" }, "Cargando…"));
  replace(main, h("h1", {}, "Reservas"), form, results);

  const filters = { date: p.dia, office: p.oficina, service: p.tramite, status: p.estado };
  const data = await get("/api/bookings", {
    ...filters,
    limit: PAGE_SIZE,
    offset: (page - 1) * PAGE_SIZE,
  });
  if (!ctx.alive()) return;
  const rows = data.items.map((b) =>
    h("tr", {},
      h("td", {}, h("code", {}, b.code)),
      h("td", {}, formatDateTime(b.starts_at)),
      h("td", {}, b.service_name),
      h("td", {}, b.office_name),
      h("td", {}, b.citizen_name),
      h("td", {}, formatCedula(b.cedula)),
      h("td", {}, b.phone || "—"),
      h("td", {}, label(BOOKING_STATUSES, b.status)),
      h("td", {}, b.call_sid
        ? h("a", { href: `#/llamadas/${encodeURIComponent(b.call_sid)}` }, "Ver llamada")
        : "—")));
  const filtered = Object.keys(p).some((k) => k !== "pagina");
  replace(
    results,
    h("p", { class: "muted" }, data.total === 1 ? "1 reserva" : `${data.total} reservas`),
    csvButton("/api/bookings/export.csv", filters, "citas.csv", "las reservas"),
    table("Reservas", ["Código", "Fecha y hora", "Trámite", "Oficina", "Nombre", "Cédula", "Teléfono", "Estado", "Llamada"],
      rows, { empty: filtered ? "Ninguna reserva coincide con los filtros." : "Todavía no hay reservas." }),
    pager(data.total, (page - 1) * PAGE_SIZE, PAGE_SIZE, (offset) =>
      ctx.navigate("/reservas", { ...p, pagina: offset / PAGE_SIZE + 1 })),
  );
}
