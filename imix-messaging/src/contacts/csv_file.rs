//! Contacts as CSV: import with a report of every row, and export.
//!
//! Columns (a header row is required, names in any case and order; others are ignored, so
//! an export imports back): `phone` (required), `wa_id`, `name`, `language`, `tags`
//! (separated by `;`), `notes`, `opted_out` (`true`/`false`, `yes`/`no`, `1`/`0`), and one
//! column per custom attribute, `attr:<key>:<type>` with type `text`, `number`, `boolean`
//! or `date` (`YYYY-MM-DD`); `attr:<key>` is text. An empty cell leaves the field as it is.
//!
//! A row whose phone number (or WhatsApp id) is one of the tenant's contacts updates it;
//! another creates a contact, counted against Max Contacts row by row, so the rows past
//! the limit are rejected with `limit_reached` and the rows before it are kept. A file is
//! checked whole first ([`check_file`]: at most [`MAX_IMPORT_ROWS`] rows and
//! [`MAX_IMPORT_BYTES`] bytes, CSV throughout, a `phone` column), then imported row by row
//! by a background job ([`super::imports`]).
//!
//! Text cells are written so that spreadsheets do not run them as formulas: one starting
//! with `=`, `+`, `-`, `@`, a tab or a carriage return gets a leading `'`, which the import
//! removes again.

use std::collections::{BTreeMap, BTreeSet};

use imix_core::{
    access::{AccessContext, Permission},
    id::TenantId,
    store::{ConflictBackoff, PageRequest, Scope},
    Error as CoreError,
};

use super::{apply, build, invalid, ContactPatch, ContactService, NewContact};
use crate::{
    error::{MessagingError, Result},
    records::{AttributeValue, Contact, ContactId},
};

/// The most data rows one import takes.
pub const MAX_IMPORT_ROWS: usize = 100_000;
/// The largest file one import takes.
pub const MAX_IMPORT_BYTES: usize = 16 * 1024 * 1024;

/// What became of one row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowOutcome {
    /// A contact was created.
    Created,
    /// An existing contact was updated.
    Updated,
    /// Nothing was stored; the row's `code` and `reason` say why.
    Rejected,
}

/// One row of an import's report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportRow {
    /// The row's line in the file (the header is line 1).
    pub row: u64,
    /// What became of it.
    pub outcome: RowOutcome,
    /// The contact created or updated.
    pub contact_id: Option<ContactId>,
    /// Why it was rejected, for programs: `invalid_field`, `limit_reached`,
    /// `<field>_taken`.
    pub code: Option<String>,
    /// The field at fault, when one is.
    pub field: Option<String>,
    /// Why it was rejected, for people.
    pub reason: Option<String>,
}

/// A column of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Column {
    Phone,
    WaId,
    Name,
    Language,
    Tags,
    Notes,
    OptedOut,
    Attribute(String, AttributeType),
    Ignored,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum AttributeType {
    Text,
    Number,
    Boolean,
    Date,
}

impl AttributeType {
    fn of(value: &AttributeValue) -> Self {
        match value {
            AttributeValue::Text(_) => Self::Text,
            AttributeValue::Number(_) => Self::Number,
            AttributeValue::Boolean(_) => Self::Boolean,
            AttributeValue::Date(_) => Self::Date,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Number => "number",
            Self::Boolean => "boolean",
            Self::Date => "date",
        }
    }

    fn parse(self, cell: &str) -> Result<AttributeValue, &'static str> {
        match self {
            Self::Text => Ok(AttributeValue::Text(cell.to_owned())),
            Self::Number => cell
                .parse::<serde_json::Number>()
                .map(AttributeValue::Number)
                .map_err(|_| "is not a number"),
            Self::Boolean => boolean(cell)
                .map(AttributeValue::Boolean)
                .ok_or("is not true or false"),
            Self::Date => chrono::NaiveDate::parse_from_str(cell, "%Y-%m-%d")
                .map(AttributeValue::Date)
                .map_err(|_| "is not a date (YYYY-MM-DD)"),
        }
    }
}

fn boolean(cell: &str) -> Option<bool> {
    match cell.to_ascii_lowercase().as_str() {
        "true" | "yes" | "1" | "y" => Some(true),
        "false" | "no" | "0" | "n" => Some(false),
        _ => None,
    }
}

fn column(header: &str) -> std::result::Result<Column, String> {
    let trimmed = header.trim();
    let lower = trimmed.to_ascii_lowercase();
    Ok(match lower.as_str() {
        "phone" => Column::Phone,
        "wa_id" => Column::WaId,
        "name" => Column::Name,
        "language" => Column::Language,
        "tags" => Column::Tags,
        "notes" => Column::Notes,
        "opted_out" => Column::OptedOut,
        _ if lower.starts_with("attr:") => {
            // The key keeps its case; only the prefix and the type are case-blind. The
            // prefix is ASCII, so its byte length is the same in both spellings.
            let rest = &trimmed["attr:".len()..];
            let (key, kind) = match rest.rsplit_once(':') {
                Some((key, kind)) => (key, kind.to_ascii_lowercase()),
                None => (rest, "text".to_owned()),
            };
            let kind = match kind.as_str() {
                "text" => AttributeType::Text,
                "number" => AttributeType::Number,
                "boolean" => AttributeType::Boolean,
                "date" => AttributeType::Date,
                _ => {
                    return Err(format!(
                        "column `{trimmed}`: the type must be text, number, boolean or date"
                    ))
                }
            };
            if key.is_empty() {
                return Err(format!("column `{trimmed}` names no attribute"));
            }
            Column::Attribute(key.to_owned(), kind)
        }
        _ => Column::Ignored,
    })
}

/// A text cell as written: a leading `'` before what a spreadsheet would run as a formula.
fn escape(text: &str) -> String {
    if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}")
    } else {
        text.to_owned()
    }
}

/// A text cell as read: [`escape`] undone.
fn unescape(cell: &str) -> &str {
    match cell.strip_prefix('\'') {
        Some(rest) if rest.starts_with(['=', '+', '-', '@', '\t', '\r']) => rest,
        _ => cell,
    }
}

/// One data row, parsed: the new contact it describes, and the patch it makes to an
/// existing one (only its non-empty cells).
struct ParsedRow {
    new: NewContact,
    patch: ContactPatch,
    attributes: BTreeMap<String, AttributeValue>,
}

fn parse_row(
    columns: &[Column],
    record: &csv::StringRecord,
) -> Result<ParsedRow, (String, String)> {
    let mut new = NewContact::default();
    let mut patch = ContactPatch::default();
    let mut attributes = BTreeMap::new();
    for (col, cell) in columns.iter().zip(record.iter()) {
        let cell = unescape(cell.trim());
        if cell.is_empty() {
            continue;
        }
        let bad = |field: &str, reason: &str| (field.to_owned(), reason.to_owned());
        match col {
            Column::Phone => new.phone = cell.to_owned(),
            Column::WaId => new.wa_id = Some(cell.to_owned()),
            Column::Name => {
                new.name = Some(cell.to_owned());
                patch.name = Some(Some(cell.to_owned()));
            }
            Column::Language => {
                new.language = Some(cell.to_owned());
                patch.language = Some(Some(cell.to_owned()));
            }
            Column::Tags => {
                let tags: Vec<String> = cell.split(';').map(str::to_owned).collect();
                new.tags = tags.clone();
                patch.tags = Some(tags);
            }
            Column::Notes => {
                new.notes = Some(cell.to_owned());
                patch.notes = Some(Some(cell.to_owned()));
            }
            Column::OptedOut => {
                let v = boolean(cell).ok_or_else(|| bad("opted_out", "is not true or false"))?;
                new.opted_out = Some(v);
                patch.opted_out = Some(v);
            }
            Column::Attribute(key, kind) => {
                let v = kind
                    .parse(cell)
                    .map_err(|r| (format!("attr:{key}"), r.to_owned()))?;
                attributes.insert(key.clone(), v);
            }
            Column::Ignored => {}
        }
    }
    if new.phone.is_empty() {
        return Err(("phone".into(), "is empty".into()));
    }
    new.attributes = attributes.clone();
    Ok(ParsedRow {
        new,
        patch,
        attributes,
    })
}

fn rejected(row: u64, code: impl Into<String>, field: Option<String>, reason: String) -> ImportRow {
    ImportRow {
        row,
        outcome: RowOutcome::Rejected,
        contact_id: None,
        code: Some(code.into()),
        field,
        reason: Some(reason),
    }
}

fn done(row: u64, outcome: RowOutcome, id: ContactId) -> ImportRow {
    ImportRow {
        row,
        outcome,
        contact_id: Some(id),
        code: None,
        field: None,
        reason: None,
    }
}

fn csv_err(e: csv::Error) -> MessagingError {
    invalid("file", format!("is not CSV: {e}"))
}

/// A file the import can take: its columns and how many data rows it has.
#[derive(Debug)]
pub(crate) struct CheckedFile {
    /// The columns, in file order.
    pub(crate) columns: Vec<Column>,
    /// Data rows (the header excluded).
    pub(crate) rows: u64,
}

/// A reader of `data` as the import reads it: a header row, rows of any length.
pub(crate) fn reader(data: &[u8]) -> csv::Reader<&[u8]> {
    csv::ReaderBuilder::new()
        .flexible(true)
        .has_headers(true)
        .from_reader(data)
}

/// Line numbers of records as an editor shows them: `\r\n`, `\n` and a lone `\r` each end
/// a line. The csv crate's own positions count `\n` only, which put every row of a Windows
/// (CRLF) file one line too low in the report and every row of a classic Mac file on line 1.
pub(crate) struct LineNumbers<'a> {
    data: &'a [u8],
    /// Bytes before this offset are counted in `line`.
    counted_to: usize,
    line: u64,
}

impl<'a> LineNumbers<'a> {
    /// Line numbers in `data`, whose first line is 1.
    pub(crate) fn new(data: &'a [u8]) -> Self {
        Self {
            data,
            counted_to: 0,
            line: 1,
        }
    }

    /// The line of the record the csv reader positions at `offset`. Offsets are expected in increasing order (as
    /// records are read); an earlier one is counted again from the start.
    pub(crate) fn line_at(&mut self, offset: u64) -> u64 {
        let mut end = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(self.data.len());
        // A record's offset can point at the line ends before it (the `\n` of a CRLF, blank
        // lines the reader skips): the record starts at its first other byte.
        while matches!(self.data.get(end), Some(b'\r' | b'\n')) {
            end += 1;
        }
        if end < self.counted_to {
            self.counted_to = 0;
            self.line = 1;
        }
        for i in self.counted_to..end {
            match self.data[i] {
                b'\n' => self.line += 1,
                b'\r' if self.data.get(i + 1) != Some(&b'\n') => self.line += 1,
                _ => {}
            }
        }
        self.counted_to = end;
        self.line
    }
}

/// Checks a whole file before anything of it is imported: refuses one that is larger than
/// [`MAX_IMPORT_BYTES`], is not CSV, has more than [`MAX_IMPORT_ROWS`] rows, has a column
/// the import cannot read or no `phone` column (field `file`).
pub(crate) fn check_file(data: &[u8]) -> Result<CheckedFile> {
    if data.len() > MAX_IMPORT_BYTES {
        return Err(invalid(
            "file",
            format!("is larger than {MAX_IMPORT_BYTES} bytes; split it"),
        ));
    }
    // Every row is parsed once here, so a file that stops being CSV halfway is refused
    // before its first row is imported.
    let mut rows = 0usize;
    let mut counting = reader(data);
    let mut record = csv::StringRecord::new();
    while counting.read_record(&mut record).map_err(csv_err)? {
        rows += 1;
        if rows > MAX_IMPORT_ROWS {
            return Err(invalid(
                "file",
                format!("has more than {MAX_IMPORT_ROWS} rows; split it"),
            ));
        }
    }
    let columns = reader(data)
        .headers()
        .map_err(csv_err)?
        .iter()
        .map(column)
        .collect::<std::result::Result<Vec<Column>, String>>()
        .map_err(|m| invalid("file", m))?;
    if !columns.contains(&Column::Phone) {
        return Err(invalid("file", "has no `phone` column"));
    }
    Ok(CheckedFile {
        columns,
        rows: rows as u64,
    })
}

impl ContactService {
    /// Imports one data row (line `line` of the file). A contact it creates gets the id
    /// `row_id`, the same each time the row is imported: a row imported again after a
    /// crash finds the contact it created and reports it created again, not updated.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn import_row(
        &self,
        scope: Scope,
        tenant: TenantId,
        limit: Option<u64>,
        columns: &[Column],
        record: &csv::StringRecord,
        line: u64,
        row_id: ContactId,
    ) -> Result<ImportRow> {
        let parsed = match parse_row(columns, record) {
            Ok(p) => p,
            Err((field, reason)) => {
                return Ok(rejected(
                    line,
                    "invalid_field",
                    Some(field.clone()),
                    format!("{field}: {reason}"),
                ))
            }
        };
        let (mut contact, explicit) = match build(tenant, parsed.new, "import") {
            Ok(c) => c,
            Err(MessagingError::Store(CoreError::Invalid { field, message })) => {
                return Ok(rejected(
                    line,
                    "invalid_field",
                    Some(field.clone()),
                    format!("{field}: {message}"),
                ))
            }
            Err(e) => return Err(e),
        };
        let existing = match &contact.phone {
            Some(phone) => {
                self.storage
                    .contact_book
                    .find_by_phone(tenant, phone)
                    .await?
            }
            None => None,
        };
        let existing = match existing {
            Some(c) => Some(c),
            None => {
                self.storage
                    .contacts
                    .find_by_wa_id(tenant, &contact.wa_id)
                    .await?
            }
        };
        contact.id = row_id;
        if let Some(found) = existing {
            if found.id == row_id {
                // This very row created it before a crash: created, and nothing to redo.
                return Ok(done(line, RowOutcome::Created, found.id));
            }
            return self
                .update_from_row(scope, found, parsed.patch, parsed.attributes, line)
                .await;
        }
        match self.insert_counted(contact, explicit, limit).await {
            Ok(c) => Ok(done(line, RowOutcome::Created, c.id)),
            Err(e @ MessagingError::LimitReached { .. }) => {
                Ok(rejected(line, "limit_reached", None, e.to_string()))
            }
            Err(MessagingError::Store(CoreError::Duplicate { field, .. })) => Ok(rejected(
                line,
                format!("{field}_taken"),
                Some(field.to_string()),
                format!("another contact has this {field}"),
            )),
            Err(e) => Err(e),
        }
    }

    async fn update_from_row(
        &self,
        scope: Scope,
        found: Contact,
        patch: ContactPatch,
        attributes: BTreeMap<String, AttributeValue>,
        line: u64,
    ) -> Result<ImportRow> {
        let mut backoff = ConflictBackoff::new();
        let mut contact = found;
        loop {
            let mut next = contact.clone();
            if let Err(e) = apply(&mut next, patch.clone()) {
                return match e {
                    MessagingError::Store(CoreError::Invalid { field, message }) => Ok(rejected(
                        line,
                        "invalid_field",
                        Some(field.clone()),
                        format!("{field}: {message}"),
                    )),
                    other => Err(other),
                };
            }
            if next.opt_out != contact.opt_out {
                if let Some(o) = &mut next.opt_out {
                    o.source = "import".into();
                }
            }
            // Attributes merge: the row's columns set theirs, the others stay.
            let mut merged = next.attributes.clone();
            merged.extend(attributes.clone());
            next.attributes = match super::attributes(merged) {
                Ok(a) => a,
                Err(MessagingError::Store(CoreError::Invalid { field, message })) => {
                    return Ok(rejected(
                        line,
                        "invalid_field",
                        Some(field.clone()),
                        format!("{field}: {message}"),
                    ))
                }
                Err(e) => return Err(e),
            };
            next.updated_at = imix_core::now();
            match self.storage.contacts.update(scope, &next).await {
                Ok(c) => return Ok(done(line, RowOutcome::Updated, c.id)),
                Err(CoreError::VersionConflict { .. }) if backoff.next_attempt().await => {
                    contact = self.storage.contacts.get(scope, contact.id).await?;
                }
                Err(CoreError::NotFound { .. }) => {
                    return Ok(rejected(
                        line,
                        "not_found",
                        None,
                        "the contact was deleted during the import".into(),
                    ))
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// `tenant`'s contacts as CSV (`contacts.read`), oldest first, in the columns the
    /// import reads (plus `id`, `profile_name`, `opt_out_at` and `created_at`, which it
    /// ignores).
    pub async fn export_csv(&self, ctx: &AccessContext, tenant: TenantId) -> Result<Vec<u8>> {
        let scope = ctx.authorize(Permission::ContactsRead, tenant)?;
        // First pass: which attribute columns the tenant's contacts need.
        let mut attribute_columns: BTreeSet<(String, AttributeType)> = BTreeSet::new();
        let mut page = PageRequest::first(imix_core::store::MAX_PAGE_SIZE);
        loop {
            let p = self.storage.contacts.list(scope, page.clone()).await?;
            for c in &p.items {
                for (k, v) in &c.attributes {
                    attribute_columns.insert((k.clone(), AttributeType::of(v)));
                }
            }
            match p.next_cursor {
                Some(next) => page.cursor = Some(next),
                None => break,
            }
        }
        let attribute_columns: Vec<(String, AttributeType)> =
            attribute_columns.into_iter().collect();
        let mut out = csv::Writer::from_writer(Vec::new());
        let mut header: Vec<String> = [
            "id",
            "phone",
            "wa_id",
            "name",
            "profile_name",
            "language",
            "tags",
            "notes",
            "opted_out",
            "opt_out_at",
            "created_at",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        header.extend(
            attribute_columns
                .iter()
                .map(|(k, t)| format!("attr:{k}:{}", t.name())),
        );
        let write_err =
            |e: csv::Error| MessagingError::Store(CoreError::backend("write contacts as CSV", e));
        out.write_record(&header).map_err(write_err)?;
        let mut page = PageRequest::first(imix_core::store::MAX_PAGE_SIZE);
        loop {
            let p = self.storage.contacts.list(scope, page.clone()).await?;
            for c in &p.items {
                let opt = c.opt_out.as_ref();
                let mut row = vec![
                    c.id.to_string(),
                    c.phone.clone().unwrap_or_default(),
                    c.wa_id.clone(),
                    escape(c.name.as_deref().unwrap_or_default()),
                    escape(c.profile_name.as_deref().unwrap_or_default()),
                    c.language.clone().unwrap_or_default(),
                    escape(&c.tags.join(";")),
                    escape(c.notes.as_deref().unwrap_or_default()),
                    opt.map(|o| o.opted_out.to_string()).unwrap_or_default(),
                    opt.map(|o| o.at.to_rfc3339()).unwrap_or_default(),
                    c.created_at.to_rfc3339(),
                ];
                for (key, kind) in &attribute_columns {
                    row.push(match c.attributes.get(key) {
                        Some(v) if AttributeType::of(v) == *kind => match v {
                            AttributeValue::Text(t) => escape(t),
                            AttributeValue::Number(n) => n.to_string(),
                            AttributeValue::Boolean(b) => b.to_string(),
                            AttributeValue::Date(d) => d.format("%Y-%m-%d").to_string(),
                        },
                        _ => String::new(),
                    });
                }
                out.write_record(&row).map_err(write_err)?;
            }
            match p.next_cursor {
                Some(next) => page.cursor = Some(next),
                None => break,
            }
        }
        out.into_inner().map_err(|e| {
            MessagingError::Store(CoreError::backend("write contacts as CSV", e.to_string()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_name_fields_and_typed_attributes() {
        assert_eq!(column(" Phone ").unwrap(), Column::Phone);
        assert_eq!(
            column("attr:Score:number").unwrap(),
            Column::Attribute("Score".into(), AttributeType::Number)
        );
        assert_eq!(
            column("ATTR:city").unwrap(),
            Column::Attribute("city".into(), AttributeType::Text)
        );
        assert_eq!(column("created_at").unwrap(), Column::Ignored);
        assert!(column("attr:x:colour").is_err());
    }

    #[test]
    fn formula_cells_round_trip() {
        for text in ["=SUM(A1)", "+1", "-x", "@me", "plain", "'quoted"] {
            assert_eq!(unescape(&escape(text)), text);
        }
        assert_eq!(escape("=1"), "'=1");
    }

    fn lines_of(data: &str) -> Vec<u64> {
        let mut input = reader(data.as_bytes());
        let mut lines = LineNumbers::new(data.as_bytes());
        let mut record = csv::StringRecord::new();
        let mut out = Vec::new();
        while input.read_record(&mut record).unwrap() {
            out.push(lines.line_at(record.position().unwrap().byte()));
        }
        out
    }

    #[test]
    fn rows_are_numbered_as_editors_number_lines_whatever_the_line_ends() {
        assert_eq!(lines_of("phone,name\n+1,a\n+2,b\n"), vec![2, 3]);
        assert_eq!(lines_of("phone,name\r\n+1,a\r\n+2,b\r\n"), vec![2, 3]);
        assert_eq!(lines_of("phone,name\r+1,a\r+2,b\r"), vec![2, 3]);
        // A quoted field over two lines: the next row starts two lines further.
        assert_eq!(
            lines_of("phone,note\r\n+1,\"two\r\nlines\"\r\n+2,b\r\n"),
            vec![2, 4]
        );
        // Blank lines (skipped by the reader) still count.
        assert_eq!(lines_of("phone\r\n\r\n+1\r\n"), vec![3]);
    }
}
