//! The account emails the tenancy services send: invitations and password resets.
//!
//! A port, so the server can plug in the localized, outbox-backed templates of
//! `imix-notify`; [`PlainAccountEmails`] is a self-contained implementation over any
//! [`Mailer`] with short texts in English, French and Arabic.

use std::sync::Arc;

use crate::records::{Tenant, User};
use async_trait::async_trait;
use imix_core::Language;
use imix_notify::{templates::ContactsThreshold, Email, MailError, Mailbox, Mailer};

/// Sends the emails of the account life cycle.
#[async_trait]
pub trait AccountEmails: Send + Sync {
    /// "You have been invited; set your password at `link`" (valid `valid_hours`).
    async fn invitation(
        &self,
        user: &User,
        language: Language,
        link: &str,
        valid_hours: i64,
    ) -> Result<(), MailError>;
    /// "Reset your password at `link`" (valid `valid_hours`).
    async fn password_reset(
        &self,
        user: &User,
        language: Language,
        link: &str,
        valid_hours: i64,
    ) -> Result<(), MailError>;
    /// "Your tenant has used `percent` % of its messages today": sent to each of a tenant's
    /// admins when the messages-per-day counter crosses 80 % and 100 % (once per day each).
    async fn usage_warning(
        &self,
        admin: &User,
        tenant: &Tenant,
        percent: u8,
        used: u64,
        limit: u64,
    ) -> Result<(), MailError>;
    /// "Your tenant has `count` contacts of its `limit`": sent to each of a tenant's admins
    /// when its contacts reach 80 % and 100 % of Max Contacts and when customers writing
    /// in take it past the limit (once per threshold and limit).
    async fn contacts_warning(
        &self,
        admin: &User,
        tenant: &Tenant,
        threshold: ContactsThreshold,
        count: u64,
        limit: u64,
    ) -> Result<(), MailError>;
}

/// Plain-text account emails sent straight through a [`Mailer`].
#[derive(Clone)]
pub struct PlainAccountEmails {
    mailer: Arc<dyn Mailer>,
}

impl PlainAccountEmails {
    /// Sends through `mailer`.
    pub fn new(mailer: Arc<dyn Mailer>) -> Self {
        Self { mailer }
    }
}

fn mailbox(user: &User) -> Mailbox {
    let name = format!("{} {}", user.first_name, user.last_name);
    if name.trim().is_empty() {
        Mailbox::new(user.email.clone())
    } else {
        Mailbox::named(name.trim(), user.email.clone())
    }
}

#[async_trait]
impl AccountEmails for PlainAccountEmails {
    async fn invitation(
        &self,
        user: &User,
        language: Language,
        link: &str,
        valid_hours: i64,
    ) -> Result<(), MailError> {
        let (subject, text) = match language {
            Language::En => (
                "You are invited to imix".to_owned(),
                format!("An account was created for you. Set your password here (valid {valid_hours} hours):\n\n{link}\n"),
            ),
            Language::Fr => (
                "Vous êtes invité sur imix".to_owned(),
                format!("Un compte a été créé pour vous. Choisissez votre mot de passe ici (valable {valid_hours} heures) :\n\n{link}\n"),
            ),
            Language::Ar => (
                "دعوة للانضمام إلى imix".to_owned(),
                format!("تم إنشاء حساب لك. عيّن كلمة المرور من هنا (صالح لمدة {valid_hours} ساعة):\n\n{link}\n"),
            ),
        };
        let mut email = Email::new(mailbox(user), subject, text);
        email.language = language;
        self.mailer.send(&email).await.map(|_| ())
    }

    async fn password_reset(
        &self,
        user: &User,
        language: Language,
        link: &str,
        valid_hours: i64,
    ) -> Result<(), MailError> {
        let (subject, text) = match language {
            Language::En => (
                "Reset your imix password".to_owned(),
                format!("Someone asked to reset your password. If it was you, use this link (valid {valid_hours} hours):\n\n{link}\n\nOtherwise ignore this email."),
            ),
            Language::Fr => (
                "Réinitialisez votre mot de passe imix".to_owned(),
                format!("Une réinitialisation de votre mot de passe a été demandée. Si c'est vous, utilisez ce lien (valable {valid_hours} heures) :\n\n{link}\n\nSinon, ignorez ce message."),
            ),
            Language::Ar => (
                "إعادة تعيين كلمة مرور imix".to_owned(),
                format!("طلب أحدهم إعادة تعيين كلمة المرور. إن كنت أنت، استخدم هذا الرابط (صالح لمدة {valid_hours} ساعة):\n\n{link}\n\nوإلا فتجاهل هذه الرسالة."),
            ),
        };
        let mut email = Email::new(mailbox(user), subject, text);
        email.language = language;
        self.mailer.send(&email).await.map(|_| ())
    }

    async fn usage_warning(
        &self,
        admin: &User,
        tenant: &Tenant,
        percent: u8,
        used: u64,
        limit: u64,
    ) -> Result<(), MailError> {
        let name = &tenant.name;
        let (subject, text) = match admin.default_language {
            Language::En => (
                format!("{name}: {percent} % of today's messages used"),
                format!("{name} has sent {used} of its {limit} messages today (UTC)."),
            ),
            Language::Fr => (
                format!("{name} : {percent} % des messages du jour utilisés"),
                format!("{name} a envoyé {used} de ses {limit} messages aujourd'hui (UTC)."),
            ),
            Language::Ar => (
                format!("{name}: تم استخدام {percent}٪ من رسائل اليوم"),
                format!("أرسل {name} اليوم {used} من أصل {limit} رسالة (بالتوقيت العالمي)."),
            ),
        };
        let mut email = Email::new(mailbox(admin), subject, text);
        email.language = admin.default_language;
        self.mailer.send(&email).await.map(|_| ())
    }

    async fn contacts_warning(
        &self,
        admin: &User,
        tenant: &Tenant,
        threshold: ContactsThreshold,
        count: u64,
        limit: u64,
    ) -> Result<(), MailError> {
        let name = &tenant.name;
        let (subject, text) = match (admin.default_language, threshold) {
            (Language::En, ContactsThreshold::Exceeded) => (
                format!("{name}: more contacts than Max Contacts"),
                format!("Customers writing in have brought {name} to {count} contacts, past its limit of {limit}."),
            ),
            (Language::En, t) => (
                format!("{name}: {}% of Max Contacts used", t.as_str()),
                format!("{name} has {count} of the {limit} contacts it may keep."),
            ),
            (Language::Fr, ContactsThreshold::Exceeded) => (
                format!("{name} : plus de contacts que la limite"),
                format!("Les clients qui écrivent ont porté {name} à {count} contacts, au-delà de sa limite de {limit}."),
            ),
            (Language::Fr, t) => (
                format!("{name} : {} % de la limite de contacts atteints", t.as_str()),
                format!("{name} a {count} des {limit} contacts autorisés."),
            ),
            (Language::Ar, ContactsThreshold::Exceeded) => (
                format!("{name}: عدد جهات الاتصال تجاوز الحد"),
                format!("أوصل العملاء الذين راسلوا {name} عدد جهات الاتصال إلى {count}، متجاوزين الحد البالغ {limit}."),
            ),
            (Language::Ar, t) => (
                format!("{name}: تم استخدام {}٪ من حد جهات الاتصال", t.as_str()),
                format!("لدى {name} {count} من أصل {limit} جهة اتصال مسموح بها."),
            ),
        };
        let mut email = Email::new(mailbox(admin), subject, text);
        email.language = admin.default_language;
        self.mailer.send(&email).await.map(|_| ())
    }
}
