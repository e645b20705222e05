// Instrucciones del asistente: the LLM's system prompt, versioned, with activate and rollback.

import { get, isAdmin, post } from "../api.js";
import { formatDateTime, h, message, replace, table } from "../dom.js";

const MAX_CHARS = 20000;

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
    const admin = isAdmin();
    const active = data.items.find((v) => v.active);
    const editor = h("textarea", {
      id: "prompt-text",
      name: "text",
      rows: "14",
      maxlength: String(MAX_CHARS),
      readonly: !admin,
      "aria-describedby": "prompt-count",
    });
    editor.value = active ? active.text : data.default_text;
    const count = h("p", { id: "prompt-count", class: "muted" });
    const updateCount = () => { count.textContent = `${editor.value.length} de ${MAX_CHARS} caracteres`; };
    editor.addEventListener("input", updateCount);
    updateCount();

    const activateNow = h("input", { type: "checkbox", id: "prompt-activate", checked: true });
    const save = h("button", { type: "submit", class: "button button-primary" }, "Guardar nueva versión");
    const form = h(
      "form",
      { class: "prompt-form", "aria-labelledby": "editor-title" },
      h("h2", { id: "editor-title" }, admin ? "Editar" : "Texto activo"),
      h("div", { class: "field" }, h("label", { for: "prompt-text" }, "Texto de las instrucciones"), editor, count),
      admin
        ? h("div", { class: "form-actions" },
            h("label", { class: "check", for: "prompt-activate" }, activateNow, " Activar al guardar"),
            save)
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
        return created.active
          ? `Se guardó la versión ${created.version} y ya está activa.`
          : `Se guardó la versión ${created.version} (no está activa).`;
      });
    });

    const rollback = h("button", { type: "button", class: "button", id: "prompt-rollback",
      disabled: !active }, "Volver a la versión anterior");
    rollback.addEventListener("click", () =>
      act(rollback, async () => {
        const v = await post("/api/prompts/rollback", {});
        return `Se volvió a la versión ${v.version}.`;
      }));

    const rows = data.items.map((v) => {
      const use = h("button", { type: "button", class: "button button-small" }, admin ? "Editar a partir de esta" : "Ver");
      use.addEventListener("click", () => {
        editor.value = v.text;
        updateCount();
        editor.focus();
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
        h("td", {}, v.active ? h("span", { class: "badge badge-ok" }, "Activa") : "—"),
        h("td", {}, h("span", { class: "preview" }, v.text.slice(0, 90) + (v.text.length > 90 ? "…" : ""))),
        h("td", { class: "actions" }, use, activate));
    });

    replace(
      body,
      h("section", { class: "card" },
        h("p", { id: "prompt-active" }, active
          ? h("strong", {}, `Versión activa: v${active.version}`)
          : h("strong", {}, "Se usa el texto incorporado (ninguna versión activa).")),
        admin ? rollback : null),
      h("section", { class: "card" }, form),
      h("section", { class: "card", "aria-labelledby": "hist-title" },
        h("h2", { id: "hist-title" }, "Historial de versiones"),
        table("Historial de versiones", ["Versión", "Creada", "Autor", "Estado", "Texto", "Acciones"], rows,
          { empty: "Todavía no hay versiones guardadas: se usa el texto incorporado." })),
    );
  }

  await load();
}
