// CSV downloads (Llamadas, Reservas). The export endpoints need the Authorization header,
// which a plain link cannot send, so the file is fetched with the session's token and handed
// to the browser as a blob. The server masks cédulas and phone numbers for agents, applies the
// same filters as the list on screen and caps the size (it says so in X-Export-Truncated).

import { get } from "./api.js";
import { h } from "./dom.js";

function filenameOf(res) {
  const header = res.headers.get("Content-Disposition") || "";
  const match = /filename="([^"]+)"/.exec(header);
  return match ? match[1] : null;
}

/** A "Descargar CSV" button for `path` with `params` (the list's filters), and its status. */
export function csvButton(path, params, fallbackName, what) {
  const status = h("span", { class: "muted export-status", role: "status" });
  const button = h("button", { type: "button", class: "button button-small" }, "Descargar CSV");
  button.setAttribute("aria-label", `Descargar CSV de ${what} (con los filtros aplicados)`);
  button.addEventListener("click", async () => {
    button.disabled = true;
    status.textContent = "Preparando el archivo…";
    try {
      const res = await get(path, params, { raw: true });
      const blob = await res.blob();
      const url = URL.createObjectURL(blob);
      const link = h("a", { href: url, download: filenameOf(res) || fallbackName, hidden: true });
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(url), 60_000);
      const total = res.headers.get("X-Total-Count");
      status.textContent =
        res.headers.get("X-Export-Truncated") === "true"
          ? `Archivo descargado, pero recortado: ${total} filas superan el límite de la exportación.`
          : "Archivo descargado.";
    } catch (err) {
      status.textContent = `No se pudo descargar el archivo: ${err.message}`;
    } finally {
      button.disabled = false;
    }
  });
  return h("div", { class: "export" }, button, " ", status);
}
