// Instrucciones del asistente: the LLM's system prompt, versioned, with activate, rollback,
// a diff between versions and the way back to the built-in text.
//
// Honest about its effect: without a language model (no OPENAI_API_KEY) calls are answered by
// the offline dialogue engine, which does not read these instructions, and the page says so
// instead of calling a version "activa". A draft survives a session that had to sign in again
// (it is kept in this tab's sessionStorage until saved).

import { get, isAdmin, post } from "../api.js";
import { formatDateTime, h, message, replace, table } from "../dom.js";

const MAX_CHARS = 20000;
const DRAFT_KEY = "taina.admin.promptDraft";
const NO_LLM =
  "Ahora mismo no hay un modelo de lenguaje configurado (OPENAI_API_KEY): las llamadas las " +
  "atiende el motor sin conexión, que no usa estas instrucciones. Puede guardarlas y quedarán " +
  "listas para cuando se configure el modelo.";

/** Line-level diff (longest common subsequence): [{kind: "same"|"add"|"del", text}]. */
export function diffLines(before, after) {
  const a = before.split("\n");
  const b = after.split("\n");
  const n = a.length;
  const m = b.length;
  const lcs = Array.from({ length: n + 1 }, () => new Uint16Array(m + 1));
  for (let i = n - 1; i >= 0; i -= 1) {
    for (let j = m - 1; j >= 0; j -= 1) {
      lcs[i][j] = a[i] === b[j] ? lcs[i + 1][j + 1] + 1 : Math.max(lcs[i + 1][j], lcs[i][j + 1]);
    }
  }
  const out = [];
  let i = 0;
  let j = 0;
  while (i < n && j < m) {
    if (a[i] === b[j]) {
      out.push({ kind: "same", text: a[i] });
      i += 1;
      j += 1;
    } else if (lcs[i + 1][j] >= lcs[i][j + 1]) {
      out.push({ kind: "del", text: a[i] });
      i += 1;
    } else {
      out.push({ kind: "add", text: b[j] });
      j += 1;
    }
  }
  while (i < n) out.push({ kind: "del", text: a[i++] });
  while (j < m) out.push({ kind: "add", text: b[j++] });
  return out;
}

/** What a version changed, in one line: its first line that differs from the one before. */
function changePreview(text, before) {
  const changed = diffLines(before ?? "", text).find((d) => d.kind === "add" && d.text.trim());
  const line = (changed ? changed.text : text).trim();
  return line.length > 90 ? `${line.slice(0, 90)}…` : line;
}

function diffView(before, after, title) {
  const lines = diffLines(before, after);
  const added = lines.filter((d) => d.kind === "add").length;
  const removed = lines.filter((d) => d.kind === "del").length;
  return h("section", { class: "card", id: "prompt-diff", "aria-labelledby": "diff-title" },
    h("h2", { id: "diff-title" }, title),
    h("p", { class: "muted" },
      `${added} ${added === 1 ? "línea nueva o cambiada" : "líneas nuevas o cambiadas"}, ` +
      `${removed} ${removed === 1 ? "quitada" : "quitadas"}.`),
    h("ol", { class: "diff", "aria-label": "Diferencias" },
      lines.map((d) => h("li", { class: `diff-${d.kind}` },
        d.kind === "same" ? null : h("span", { class: "visually-hidden" },
          d.kind === "add" ? "Añadido: " : "Quitado: "),
        h("span", { "aria-hidden": "true", class: "diff-sign" },
          d.kind === "add" ? "+" : d.kind === "del" ? "−" : " "),
        d.text || " "))));
}

export async function renderPrompts(main, { ctx }) {
  const status = h("div", { id: "prompt-status", "aria-live": "polite" });
  const body = h("div", {}, h("p", { class: "loading" }, "Cargando…"));
  replace(
    main,
    h("h1", {}, "Instrucciones del asistente"),
    h("p", { class: "muted" },
      "Son las instrucciones que sigue el asistente con modelo de lenguaje. Cada cambio se guarda " +
      "como una versión nueva; las llamadas usan la versión activa desde su próximo turno."),
    status,
    body,
  );

  const say = (kind, text) => replace(status, message(kind, text));
  let llm = true;

  async function act(button, work) {
    button.disabled = true;
    try {
      const text = await work();
      await load();
      say("ok", text);
    } catch (err) {
      if (err?.status !== 401) say("error", err.message);
    } finally {
      button.disabled = false;
    }
  }

  async function load() {
    const data = await get("/api/prompts");
    if (!ctx.alive()) return;
    llm = data.llm_configured !== false;
    const admin = isAdmin();
    const active = data.items.find((v) => v.active);
    const activeText = active ? active.text : data.default_text;
    const editor = h("textarea", {
      id: "prompt-text",
      name: "text",
      rows: "14",
      maxlength: String(MAX_CHARS),
      readonly: !admin,
      "aria-describedby": "prompt-count",
    });
    const draft = admin ? sessionStorage.getItem(DRAFT_KEY) : null;
    editor.value = draft ?? activeText;
    const count = h("p", { id: "prompt-count", class: "muted" });
    const updateCount = () => { count.textContent = `${editor.value.length} de ${MAX_CHARS} caracteres`; };
    editor.addEventListener("input", () => {
      updateCount();
      if (editor.value !== activeText) sessionStorage.setItem(DRAFT_KEY, editor.value);
      else sessionStorage.removeItem(DRAFT_KEY);
    });
    updateCount();

    const activateNow = h("input", { type: "checkbox", id: "prompt-activate", checked: true });
    const save = h("button", { type: "submit", class: "button button-primary" }, "Guardar nueva versión");
    const compareDraft = h("button", { type: "button", class: "button" }, "Ver cambios frente a la activa");
    const diffBox = h("div", { id: "prompt-diff-box" });
    compareDraft.addEventListener("click", () => {
      replace(diffBox, diffView(activeText, editor.value,
        `Cambios del borrador frente a ${active ? `la versión ${active.version}` : "el texto incorporado"}`));
      diffBox.querySelector("h2")?.focus?.();
    });
    const form = h(
      "form",
      { class: "prompt-form", "aria-labelledby": "editor-title" },
      h("h2", { id: "editor-title" }, admin ? "Editar" : "Texto activo"),
      draft !== null && draft !== activeText
        ? message("info", "Se recuperó el borrador que no había guardado.")
        : null,
      h("div", { class: "field" }, h("label", { for: "prompt-text" }, "Texto de las instrucciones"), editor, count),
      admin
        ? h("div", { class: "form-actions" },
            h("label", { class: "check", for: "prompt-activate" }, activateNow, " Activar al guardar"),
            save, compareDraft)
        : message("info", "Solo un administrador puede cambiar las instrucciones."),
    );
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      if (!admin) return;
      if (!editor.value.trim()) {
        say("error", "Las instrucciones no pueden estar vacías.");
        editor.focus();
        return;
      }
      act(save, async () => {
        const created = await post("/api/prompts", { text: editor.value, activate: activateNow.checked });
        sessionStorage.removeItem(DRAFT_KEY);
        if (!created.active) return `Se guardó la versión ${created.version} (no está activa).`;
        return llm
          ? `Se guardó la versión ${created.version} y ya está activa.`
          : `Se guardó la versión ${created.version}. Quedó seleccionada, pero no tendrá efecto ` +
            "hasta que se configure un modelo de lenguaje.";
      });
    });

    const previous = data.rollback_version;
    const rollback = h("button", { type: "button", class: "button", id: "prompt-rollback",
      disabled: !previous }, previous ? `Volver a la versión anterior (v${previous})` : "Volver a la versión anterior");
    rollback.addEventListener("click", () =>
      act(rollback, async () => {
        const v = await post("/api/prompts/rollback", {});
        return `Se volvió a la versión ${v.version}.`;
      }));
    const builtIn = h("button", { type: "button", class: "button", id: "prompt-default",
      disabled: !active }, "Usar el texto incorporado");
    builtIn.addEventListener("click", () =>
      act(builtIn, async () => {
        await post("/api/prompts/default", {});
        sessionStorage.removeItem(DRAFT_KEY);
        return "Se volvió al texto incorporado: ninguna versión está activa.";
      }));

    // Newest first: each version is compared with the one saved before it (the oldest with
    // the built-in text), so two versions that start alike still read differently.
    const rows = data.items.map((v, index) => {
      const older = data.items[index + 1];
      const before = older ? older.text : data.default_text;
      const use = h("button", { type: "button", class: "button button-small",
        "aria-label": `${admin ? "Editar a partir de" : "Ver"} la versión ${v.version}` },
        admin ? "Editar a partir de esta" : "Ver");
      use.addEventListener("click", () => {
        editor.value = v.text;
        editor.dispatchEvent(new Event("input"));
        editor.focus();
      });
      const compare = h("button", { type: "button", class: "button button-small",
        "aria-label": `Comparar la versión ${v.version} con ${older ? `la ${older.version}` : "el texto incorporado"}` },
        "Comparar");
      compare.addEventListener("click", () => {
        replace(diffBox, diffView(before, v.text,
          `Versión ${v.version} frente a ${older ? `la versión ${older.version}` : "el texto incorporado"}`));
      });
      const activate = admin && !v.active
        ? h("button", { type: "button", class: "button button-small", dataset: { version: String(v.version) } }, `Activar v${v.version}`)
        : null;
      activate?.addEventListener("click", () =>
        act(activate, async () => {
          const done = await post(`/api/prompts/${v.version}/activate`, {});
          return `Se activó la versión ${done.version}.`;
        }));
      return h("tr", { class: v.active ? "row-active" : null, dataset: { version: String(v.version) } },
        h("th", { scope: "row" }, `v${v.version}`),
        h("td", {}, formatDateTime(v.created_at)),
        h("td", {}, v.created_by || "—"),
        h("td", {}, v.active
          ? h("span", { class: llm ? "badge badge-ok" : "badge badge-warn" }, llm ? "Activa" : "Seleccionada (sin efecto)")
          : "—"),
        h("td", {}, h("span", { class: "preview" }, changePreview(v.text, before))),
        h("td", { class: "actions" }, use, compare, activate));
    });

    let activeLine;
    if (!active) activeLine = "Se usa el texto incorporado (ninguna versión activa).";
    else if (llm) activeLine = `Versión activa: v${active.version}`;
    else activeLine = `Versión seleccionada: v${active.version} (sin efecto sin modelo de lenguaje)`;
    replace(
      body,
      llm ? null : message("warn", NO_LLM),
      h("section", { class: "card" },
        h("p", { id: "prompt-active" }, h("strong", {}, activeLine)),
        admin ? h("div", { class: "form-actions" }, rollback, builtIn) : null),
      h("section", { class: "card" }, form),
      diffBox,
      h("section", { class: "card", "aria-labelledby": "hist-title" },
        h("h2", { id: "hist-title" }, "Historial de versiones"),
        table("Historial de versiones", ["Versión", "Creada", "Autor", "Estado", "Qué cambia", "Acciones"], rows,
          { empty: "Todavía no hay versiones guardadas: se usa el texto incorporado." })),
    );
  }

  await load();
}
