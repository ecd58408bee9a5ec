//! `/set-password?token=…`: where invitation and reset emails lead. `GET` shows a form (in
//! English, French or Arabic, right to left for Arabic) with the password rules; the form
//! posts back to the same path, which sets the password through the same service as
//! `POST /api/v1/auth/set-password` and shows the outcome. Plain HTML: it keeps working
//! whatever console is served beside it.

use imix_core::Language;
use imix_tenancy::{password::MAX_PASSWORD_BYTES, TenancyError};
use poem::{
    handler,
    http::StatusCode,
    web::{Data, Form, Query},
    Request, Response,
};
use secrecy::SecretString;
use serde::Deserialize;

use super::{escape, html_response, negotiate_language};
use crate::{auth::client_addr, error::ApiError, state::AppState};

/// The page's path (the one the emails link to).
pub const PATH: &str = "/set-password";
/// Where the page leads to sign in, until a console serves a sign-in page.
pub const SIGN_IN_PATH: &str = "/docs";

/// `GET /set-password`.
#[derive(Debug, Default, Deserialize)]
pub struct PageQuery {
    /// The token from the emailed link.
    #[serde(default)]
    token: Option<String>,
    /// `en`, `fr` or `ar`; else `Accept-Language` decides.
    #[serde(default)]
    lang: Option<String>,
}

/// The form the page posts.
#[derive(Default, Deserialize)]
pub struct SetPasswordForm {
    #[serde(default)]
    token: String,
    #[serde(default)]
    new_password: String,
    #[serde(default)]
    confirm_password: String,
    #[serde(default)]
    lang: Option<String>,
}

/// The page's texts in one language.
struct Texts {
    title: &'static str,
    intro: &'static str,
    new_password: &'static str,
    confirm_password: &'static str,
    submit: &'static str,
    rules_title: &'static str,
    rules: [&'static str; 3],
    mismatch: &'static str,
    refused: &'static str,
    link_invalid: &'static str,
    deactivated: &'static str,
    failed: &'static str,
    done: &'static str,
    sign_in: &'static str,
}

fn texts(lang: Language) -> Texts {
    match lang {
        Language::En => Texts {
            title: "Set your password",
            intro: "Choose the password you will use to sign in to iMix.",
            new_password: "New password",
            confirm_password: "Repeat the new password",
            submit: "Set password",
            rules_title: "Your password must:",
            rules: [
                "be at least 10 characters and at most 1,024 bytes long;",
                "not contain your email address or your name, nor be only spaces;",
                "not be a common or easily guessed password: several unrelated words make a good one.",
            ],
            mismatch: "The two passwords differ.",
            refused: "This password cannot be used:",
            link_invalid: "This link is invalid, has expired or was already used. Ask for a new one.",
            deactivated: "This account is deactivated.",
            failed: "Something went wrong; try again in a moment.",
            done: "Your password is set. You can now sign in.",
            sign_in: "Sign in",
        },
        Language::Fr => Texts {
            title: "Choisissez votre mot de passe",
            intro: "Choisissez le mot de passe avec lequel vous vous connecterez à iMix.",
            new_password: "Nouveau mot de passe",
            confirm_password: "Répétez le nouveau mot de passe",
            submit: "Enregistrer le mot de passe",
            rules_title: "Votre mot de passe doit :",
            rules: [
                "compter au moins 10 caractères et au plus 1 024 octets ;",
                "ne contenir ni votre adresse e-mail ni votre nom, et ne pas être fait que d’espaces ;",
                "ne pas être un mot de passe courant ou facile à deviner : plusieurs mots sans rapport entre eux font un bon mot de passe.",
            ],
            mismatch: "Les deux mots de passe diffèrent.",
            refused: "Ce mot de passe ne peut pas être utilisé :",
            link_invalid: "Ce lien est invalide, a expiré ou a déjà servi. Demandez-en un nouveau.",
            deactivated: "Ce compte est désactivé.",
            failed: "Une erreur est survenue ; réessayez dans un instant.",
            done: "Votre mot de passe est enregistré. Vous pouvez maintenant vous connecter.",
            sign_in: "Se connecter",
        },
        Language::Ar => Texts {
            title: "عيّن كلمة المرور",
            intro: "اختر كلمة المرور التي ستستخدمها لتسجيل الدخول إلى iMix.",
            new_password: "كلمة المرور الجديدة",
            confirm_password: "أعد كتابة كلمة المرور الجديدة",
            submit: "تعيين كلمة المرور",
            rules_title: "يجب أن تكون كلمة المرور:",
            rules: [
                "من 10 أحرف على الأقل و1024 بايت على الأكثر؛",
                "خالية من بريدك الإلكتروني واسمك، وألا تتكون من مسافات فقط؛",
                "غير شائعة ولا يسهل تخمينها: عدة كلمات لا رابط بينها تصنع كلمة مرور جيدة.",
            ],
            mismatch: "كلمتا المرور مختلفتان.",
            refused: "لا يمكن استخدام كلمة المرور هذه:",
            link_invalid: "هذا الرابط غير صالح أو منتهي الصلاحية أو سبق استخدامه. اطلب رابطًا جديدًا.",
            deactivated: "هذا الحساب معطّل.",
            failed: "حدث خطأ؛ حاول مرة أخرى بعد قليل.",
            done: "تم تعيين كلمة المرور. يمكنك الآن تسجيل الدخول.",
            sign_in: "تسجيل الدخول",
        },
    }
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;max-width:32rem;margin:2rem auto;\
padding:0 1rem;color:#1a1a1a;line-height:1.5}h1{font-size:1.5rem}label{display:block;\
margin-top:1rem;font-weight:600}input[type=password]{width:100%;box-sizing:border-box;\
padding:.5rem;font-size:1rem}button{margin-top:1.25rem;padding:.6rem 1.2rem;font-size:1rem}\
.error{background:#fdecea;border:1px solid #f5c2c0;padding:.75rem;border-radius:4px}\
.done{background:#e8f5e9;border:1px solid #b9dfbb;padding:.75rem;border-radius:4px}\
.rules{font-size:.9rem;color:#444}";

/// What the page shows below its heading.
enum Body<'a> {
    /// The form, with an error above it when a try was refused.
    Form {
        token: &'a str,
        error: Option<String>,
    },
    /// The link cannot be used: no form.
    Unusable(&'a str),
    /// The password is set.
    Done,
}

fn render(lang: Language, body: Body<'_>) -> String {
    let t = texts(lang);
    let mut main = String::new();
    match body {
        Body::Form { token, error } => {
            main.push_str(&format!("<p>{}</p>", escape(t.intro)));
            if let Some(error) = error {
                main.push_str(&format!(
                    "<p class=\"error\" role=\"alert\">{}</p>",
                    escape(&error)
                ));
            }
            main.push_str(&format!(
                "<form method=\"post\" action=\"{PATH}\">\
                 <input type=\"hidden\" name=\"token\" value=\"{token}\">\
                 <input type=\"hidden\" name=\"lang\" value=\"{code}\">\
                 <label for=\"new_password\">{new}</label>\
                 <input type=\"password\" id=\"new_password\" name=\"new_password\" \
                 autocomplete=\"new-password\" required minlength=\"10\" maxlength=\"{max}\" \
                 aria-describedby=\"rules\">\
                 <label for=\"confirm_password\">{confirm}</label>\
                 <input type=\"password\" id=\"confirm_password\" name=\"confirm_password\" \
                 autocomplete=\"new-password\" required minlength=\"10\" maxlength=\"{max}\">\
                 <div id=\"rules\" class=\"rules\"><p>{rules_title}</p><ul>{rules}</ul></div>\
                 <button type=\"submit\">{submit}</button></form>",
                token = escape(token),
                code = lang.code(),
                new = escape(t.new_password),
                confirm = escape(t.confirm_password),
                max = MAX_PASSWORD_BYTES,
                rules_title = escape(t.rules_title),
                rules = t
                    .rules
                    .iter()
                    .map(|r| format!("<li>{}</li>", escape(r)))
                    .collect::<String>(),
                submit = escape(t.submit),
            ));
        }
        Body::Unusable(why) => {
            main.push_str(&format!(
                "<p class=\"error\" role=\"alert\">{}</p>",
                escape(why)
            ));
        }
        Body::Done => {
            main.push_str(&format!(
                "<p class=\"done\" role=\"status\">{}</p>",
                escape(t.done)
            ));
        }
    }
    format!(
        "<!DOCTYPE html>\n<html lang=\"{code}\" dir=\"{dir}\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"referrer\" content=\"no-referrer\">\
         <title>{title} · iMix</title><style>{STYLE}</style></head>\
         <body><main><h1>{title}</h1>{main}<p><a href=\"{SIGN_IN_PATH}\">{sign_in}</a></p>\
         </main></body></html>\n",
        code = lang.code(),
        dir = if lang.is_rtl() { "rtl" } else { "ltr" },
        title = escape(t.title),
        sign_in = escape(t.sign_in),
    )
}

/// `GET /set-password?token=…[&lang=…]`: the form.
#[handler]
pub async fn show(req: &Request, Query(query): Query<PageQuery>) -> Response {
    let lang = negotiate_language(query.lang.as_deref(), req);
    match query.token.as_deref().map(str::trim) {
        Some(token) if !token.is_empty() => html_response(
            StatusCode::OK,
            render(lang, Body::Form { token, error: None }),
        ),
        _ => html_response(
            StatusCode::BAD_REQUEST,
            render(lang, Body::Unusable(texts(lang).link_invalid)),
        ),
    }
}

/// `POST /set-password` (form): sets the password, then shows the outcome.
#[handler]
pub async fn submit(
    req: &Request,
    Data(state): Data<&AppState>,
    Form(form): Form<SetPasswordForm>,
) -> Response {
    let lang = negotiate_language(form.lang.as_deref(), req);
    let t = texts(lang);
    let token = form.token.trim();
    if token.is_empty() {
        return html_response(
            StatusCode::BAD_REQUEST,
            render(lang, Body::Unusable(t.link_invalid)),
        );
    }
    let retry = |status: StatusCode, error: String| {
        html_response(
            status,
            render(
                lang,
                Body::Form {
                    token,
                    error: Some(error),
                },
            ),
        )
    };
    if form.new_password != form.confirm_password {
        return retry(StatusCode::UNPROCESSABLE_ENTITY, t.mismatch.to_owned());
    }
    let result = state
        .tenancy
        .set_password(
            token,
            &SecretString::from(form.new_password),
            client_addr(req),
        )
        .await;
    match result {
        Ok(()) => html_response(StatusCode::OK, render(lang, Body::Done)),
        Err(TenancyError::Invalid { message, .. }) => retry(
            StatusCode::UNPROCESSABLE_ENTITY,
            // The service explains in English; the rules above the field are localized.
            format!("{} {message}.", t.refused),
        ),
        Err(e @ TenancyError::TokenInvalid) => html_response(
            ApiError::from(e).status(),
            render(lang, Body::Unusable(t.link_invalid)),
        ),
        Err(e @ TenancyError::AccountDeactivated) => html_response(
            ApiError::from(e).status(),
            render(lang, Body::Unusable(t.deactivated)),
        ),
        Err(e) => {
            tracing::error!(error = %e, "the set-password page could not set a password");
            retry(ApiError::from(e).status(), t.failed.to_owned())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_language_renders_escaped_with_its_direction() {
        for lang in Language::ALL {
            let html = render(
                lang,
                Body::Form {
                    token: "\"><script>x</script>",
                    error: Some("<b>no</b>".into()),
                },
            );
            assert!(html.contains(&format!("lang=\"{}\"", lang.code())));
            assert_eq!(html.contains("dir=\"rtl\""), lang == Language::Ar);
            assert!(!html.contains("<script>") && !html.contains("<b>"));
            assert!(html.contains("&lt;b&gt;no&lt;/b&gt;"));
            assert!(html.contains("href=\"/docs\""));
        }
    }
}
