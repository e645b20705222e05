// The sign-in page (local accounts or Supabase Auth, same form).

import { signIn } from "./api.js";
import { h, message, replace } from "./dom.js";

export function renderLogin(main, { notice, supabase, onSignedIn }) {
  const errorBox = h("div", { id: "login-error", "aria-live": "assertive" });
  const email = h("input", {
    id: "login-email",
    name: "email",
    type: "email",
    autocomplete: "username",
    required: true,
    "aria-describedby": "login-error",
  });
  const password = h("input", {
    id: "login-password",
    name: "password",
    type: "password",
    autocomplete: "current-password",
    required: true,
    "aria-describedby": "login-error",
  });
  const submit = h("button", { type: "submit", class: "button button-primary" }, "Iniciar sesión");

  const form = h(
    "form",
    { class: "login-form", novalidate: true, "aria-labelledby": "login-title" },
    h("div", { class: "field" }, h("label", { for: "login-email" }, "Correo electrónico"), email),
    h("div", { class: "field" }, h("label", { for: "login-password" }, "Contraseña"), password),
    errorBox,
    submit,
  );

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    replace(errorBox);
    if (!email.value.trim() || !password.value) {
      replace(errorBox, message("error", "Escriba su correo electrónico y su contraseña."));
      (email.value.trim() ? password : email).focus();
      return;
    }
    submit.disabled = true;
    submit.textContent = "Iniciando sesión…";
    try {
      await signIn(email.value.trim(), password.value);
      onSignedIn();
    } catch (err) {
      replace(errorBox, message("error", err.message));
      password.value = "";
      password.focus();
    } finally {
      submit.disabled = false;
      submit.textContent = "Iniciar sesión";
    }
  });

  replace(
    main,
    h(
      "section",
      { class: "login card" },
      h("h1", { id: "login-title" }, "Iniciar sesión"),
      h(
        "p",
        { class: "muted" },
        supabase
          ? "Entre con su cuenta del personal (Supabase)."
          : "Entre con su cuenta del personal de la oficina.",
      ),
      notice ? message(notice.kind, notice.text) : null,
      form,
    ),
  );
}
