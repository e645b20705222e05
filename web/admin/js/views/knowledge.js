// Base de conocimiento: the office's Markdown documents: read, download, upload, delete and
// reindex. Reading and downloading go through the API with the session's token (a plain link
// could not send it), so the text is fetched and shown or saved from memory.

import { get, isAdmin, post, request } from "../api.js";
import { formatBytes, formatDateTime, h, message, replace, table } from "../dom.js";
import { tryQuestionCard } from "./quality.js";

export async function renderKnowledge(main, { params, ctx }) {
  const status = h("div", { id: "knowledge-status", "aria-live": "polite" });
  const body = h("div", {}, h("p", { class: "loading" }, "Cargando…"));
  replace(
    main,
    h("h1", {}, "Base de conocimiento"),
    h("p", { class: "muted" },
      "Documentos con los que el asistente responde. Después de subir o cambiar documentos, " +
      "reindexe para que las llamadas los usen."),
    status,
    tryQuestionCard(),
    body,
  );
  const say = (kind, text) => replace(status, message(kind, text));
  const viewer = h("div", { id: "kb-viewer" });
  const docUrl = (path) => `/api/knowledge/documents/${encodeURIComponent(path)}`;

  async function show(d) {
    const res = await request(docUrl(d.path), { raw: true });
    const text = await res.text();
    if (!ctx.alive()) return;
    const close = h("button", { type: "button", class: "button button-small" }, "Cerrar");
    close.addEventListener("click", () => replace(viewer));
    replace(viewer, h("section", { class: "card", "aria-labelledby": "kb-view-title" },
      h("div", { class: "card-head" }, h("h2", { id: "kb-view-title" }, d.path), close),
      h("pre", { class: "doc-text", tabindex: "0", "aria-label": `Texto de ${d.path}` }, text)));
    viewer.querySelector("h2").setAttribute("tabindex", "-1");
    viewer.querySelector("h2").focus();
  }

  async function download(d) {
    const res = await request(`${docUrl(d.path)}?download=true`, { raw: true });
    const url = URL.createObjectURL(await res.blob());
    const link = h("a", { href: url, download: d.path, hidden: true });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  }

  function askDelete(d, cell) {
    const yes = h("button", { type: "button", class: "button button-danger button-small" }, "Sí, borrar");
    const no = h("button", { type: "button", class: "button button-small" }, "Cancelar");
    const before = [...cell.childNodes];
    replace(cell, h("span", { role: "group", "aria-label": `Confirmar borrado de ${d.path}` },
      `¿Borrar «${d.path}»? `, yes, " ", no));
    no.addEventListener("click", () => { replace(cell, ...before); before[0]?.focus?.(); });
    yes.addEventListener("click", async () => {
      yes.disabled = true;
      try {
        await request(docUrl(d.path), { method: "DELETE" });
        await load();
        say("ok", `Se borró «${d.path}». Reindexe para que el asistente deje de usarlo.`);
      } catch (err) {
        if (err?.status !== 401) say("error", err.message);
        replace(cell, ...before);
      }
    });
    yes.focus();
  }

  const guard = (work) => async () => {
    try {
      await work();
    } catch (err) {
      if (err?.status !== 401) say("error", err.message);
    }
  };

  async function load() {
    const data = await get("/api/knowledge");
    if (!ctx.alive()) return;
    const admin = isAdmin();
    const rows = data.documents.map((d) => {
      const actions = h("td", { class: "actions" });
      const view = h("button", { type: "button", class: "button button-small",
        "aria-label": `Ver ${d.path}`, onclick: guard(() => show(d)) }, "Ver");
      const save = h("button", { type: "button", class: "button button-small",
        "aria-label": `Descargar ${d.path}`, onclick: guard(() => download(d)) }, "Descargar");
      const remove = admin
        ? h("button", { type: "button", class: "button button-small",
            "aria-label": `Borrar ${d.path}`, onclick: () => askDelete(d, actions) }, "Borrar")
        : null;
      actions.append(view, " ", save, remove ? " " : "", remove || "");
      return h("tr", { dataset: { doc: d.path } },
        h("th", { scope: "row" }, h("code", {}, d.path)),
        h("td", {}, d.title || "—"),
        h("td", { class: "num" }, d.sections ? String(d.sections) : h("span", { class: "badge badge-warn" }, "sin indexar")),
        h("td", { class: "num" }, formatBytes(d.size)),
        h("td", {}, formatDateTime(d.updated_at)),
        actions);
    });

    const file = h("input", { type: "file", id: "kb-file", name: "file", accept: ".md,text/markdown" });
    const upload = h("button", { type: "submit", class: "button button-primary" }, "Subir documento");
    const uploadForm = h("form", { class: "upload-form", "aria-labelledby": "up-title" },
      h("h2", { id: "up-title" }, "Subir un documento"),
      h("div", { class: "field" }, h("label", { for: "kb-file" }, "Archivo Markdown (.md, hasta 200 KB)"), file,
        h("p", { class: "muted", id: "kb-file-help" },
          "El nombre puede llevar tildes (p. ej. licencia_conducción.md), sin espacios ni puntos.")),
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
        table("Documentos", ["Archivo", "Título", "Secciones", "Tamaño", "Actualizado", "Acciones"], rows,
          { empty: "No hay documentos." })),
      viewer,
    );
  }

  await load();
  // #/conocimiento?ver=oficinas.md opens a document (links from a call's «Respondió con»).
  const wanted = params?.get("ver");
  if (wanted && ctx.alive()) await guard(() => show({ path: wanted }))();
}
