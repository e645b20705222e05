// Base de conocimiento: the office's Markdown documents, upload and reindex.

import { get, isAdmin, post, request } from "../api.js";
import { formatBytes, formatDateTime, h, message, replace, table } from "../dom.js";

export async function renderKnowledge(main, { ctx }) {
  const status = h("div", { id: "knowledge-status", "aria-live": "polite" });
  const body = h("div", {}, h("p", { class: "loading" }, "Cargando…"));
  replace(
    main,
    h("h1", {}, "Base de conocimiento"),
    h("p", { class: "muted" },
      "Documentos con los que el asistente responde. Después de subir o cambiar documentos, " +
      "reindexe para que las llamadas los usen."),
    status,
    body,
  );
  const say = (kind, text) => replace(status, message(kind, text));

  async function load() {
    const data = await get("/api/knowledge");
    if (!ctx.alive()) return;
    const admin = isAdmin();
    const rows = data.documents.map((d) =>
      h("tr", {},
        h("th", { scope: "row" }, h("code", {}, d.path)),
        h("td", {}, d.title || "—"),
        h("td", { class: "num" }, d.sections ? String(d.sections) : h("span", { class: "badge badge-warn" }, "sin indexar")),
        h("td", { class: "num" }, formatBytes(d.size)),
        h("td", {}, formatDateTime(d.updated_at))));

    const file = h("input", { type: "file", id: "kb-file", name: "file", accept: ".md,text/markdown" });
    const upload = h("button", { type: "submit", class: "button button-primary" }, "Subir documento");
    const uploadForm = h("form", { class: "upload-form", "aria-labelledby": "up-title" },
      h("h2", { id: "up-title" }, "Subir un documento"),
      h("div", { class: "field" }, h("label", { for: "kb-file" }, "Archivo Markdown (.md, hasta 200 KB)"), file),
      upload);
    uploadForm.addEventListener("submit", async (event) => {
      event.preventDefault();
      if (!file.files.length) {
        say("error", "Elija un archivo .md para subir.");
        file.focus();
        return;
      }
      const form = new FormData();
      form.append("file", file.files[0]);
      upload.disabled = true;
      try {
        const res = await request("/api/knowledge", { method: "POST", form });
        await load();
        say("ok", `${res.replaced ? "Se reemplazó" : "Se subió"} «${res.document.path}». ` +
          "Reindexe para que el asistente lo use.");
      } catch (err) {
        if (err?.status !== 401) say("error", err.message);
      } finally {
        upload.disabled = false;
      }
    });

    const reindex = h("button", { type: "button", class: "button", id: "kb-reindex" }, "Reindexar");
    reindex.addEventListener("click", async () => {
      reindex.disabled = true;
      say("info", "Reconstruyendo el índice…");
      try {
        const info = await post("/api/knowledge/reindex", {});
        await load();
        say("ok", `Índice ${info.rebuilt ? "reconstruido" : "al día"}: ${info.files} documentos, ${info.sections} secciones.`);
      } catch (err) {
        if (err?.status !== 401) say("error", err.message);
      } finally {
        reindex.disabled = false;
      }
    });

    replace(
      body,
      h("section", { class: "card" },
        h("p", {}, `Índice cargado: ${data.index.files} documentos, ${data.index.sections} secciones` +
          `${data.index.hybrid ? " (búsqueda híbrida)" : ""}.`),
        data.stale
          ? message("warn", "Hay cambios sin publicar: reindexe para que el asistente los use.")
          : h("p", { class: "muted" }, "El índice está al día con los documentos."),
        admin ? reindex : message("info", "Solo un administrador puede subir documentos o reindexar.")),
      admin ? h("section", { class: "card" }, uploadForm) : null,
      h("section", { class: "card", "aria-labelledby": "docs-title" },
        h("h2", { id: "docs-title" }, `Documentos (${data.documents.length})`),
        table("Documentos", ["Archivo", "Título", "Secciones", "Tamaño", "Actualizado"], rows,
          { empty: "No hay documentos." })),
    );
  }

  await load();
}
