//! A tenant's business hours: weekly open intervals in the tenant's IANA time zone.
//!
//! Times are wall-clock times of the tenant's zone, so "09:00–17:00 on Monday" stays right
//! across daylight-saving changes: the instant is converted to local time with the zone's
//! rules (chrono-tz, the IANA database) before it is compared.

use std::fmt;

use chrono::{DateTime, Datelike, Timelike, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

/// Weekday names as used in settings, Monday first (index = `Weekday::num_days_from_monday`).
pub const WEEKDAYS: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

/// At most this many open intervals per day.
pub const MAX_INTERVALS_PER_DAY: usize = 8;

/// One open interval of a day, wall-clock `HH:MM` in the tenant's zone; `close` may be
/// `24:00` (end of the day). An interval over midnight is written as two.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenInterval {
    /// Opening time, `HH:MM`.
    pub open: String,
    /// Closing time, `HH:MM` (exclusive), later than `open`.
    pub close: String,
}

/// The business hours as stored and shown: a time zone and, per weekday name, the open
/// intervals. A day that is missing or empty is closed.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct BusinessHoursSpec {
    /// IANA time zone, e.g. `Africa/Nouakchott` or `Europe/Paris`.
    pub time_zone: String,
    /// Weekday name (`monday` … `sunday`) → open intervals.
    #[serde(default)]
    pub days: std::collections::BTreeMap<String, Vec<OpenInterval>>,
}

/// What is wrong with a business-hours specification, with the offending field's path
/// relative to the business hours (`time_zone`, `days.monday[0].close`, …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoursError {
    /// The field, e.g. `days.monday[0].open`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for HoursError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Validated business hours, ready for [`BusinessHours::is_open`].
#[derive(Debug, Clone, PartialEq)]
pub struct BusinessHours {
    tz: Tz,
    /// Per weekday (Monday first): `(open, close)` in minutes since local midnight.
    days: [Vec<(u16, u16)>; 7],
}

fn parse_minutes(s: &str, allow_24: bool) -> Option<u16> {
    let (h, m) = s.trim().split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let h: u16 = h.parse().ok()?;
    let m: u16 = m.parse().ok()?;
    if m > 59 {
        return None;
    }
    match h {
        0..=23 => Some(h * 60 + m),
        24 if allow_24 && m == 0 => Some(24 * 60),
        _ => None,
    }
}

impl BusinessHours {
    /// Validates `spec`, naming every bad field.
    pub fn parse(spec: &BusinessHoursSpec) -> Result<Self, Vec<HoursError>> {
        let mut errors = Vec::new();
        let tz = spec.time_zone.trim().parse::<Tz>().ok();
        if tz.is_none() {
            errors.push(HoursError {
                field: "time_zone".into(),
                message: "must be an IANA time zone such as Africa/Nouakchott or Europe/Paris"
                    .into(),
            });
        }
        let mut days: [Vec<(u16, u16)>; 7] = Default::default();
        for (name, intervals) in &spec.days {
            let Some(index) = WEEKDAYS.iter().position(|d| d == name) else {
                errors.push(HoursError {
                    field: format!("days.{name}"),
                    message: "must be a weekday name: monday … sunday".into(),
                });
                continue;
            };
            if intervals.len() > MAX_INTERVALS_PER_DAY {
                errors.push(HoursError {
                    field: format!("days.{name}"),
                    message: format!("at most {MAX_INTERVALS_PER_DAY} intervals per day"),
                });
                continue;
            }
            let mut parsed = Vec::new();
            for (i, interval) in intervals.iter().enumerate() {
                let open = parse_minutes(&interval.open, false);
                let close = parse_minutes(&interval.close, true);
                if open.is_none() {
                    errors.push(HoursError {
                        field: format!("days.{name}[{i}].open"),
                        message: "must be a time HH:MM between 00:00 and 23:59".into(),
                    });
                }
                if close.is_none() {
                    errors.push(HoursError {
                        field: format!("days.{name}[{i}].close"),
                        message: "must be a time HH:MM between 00:01 and 24:00".into(),
                    });
                }
                if let (Some(o), Some(c)) = (open, close) {
                    if c <= o {
                        errors.push(HoursError {
                            field: format!("days.{name}[{i}].close"),
                            message:
                                "must be later than open (write an interval over midnight as two)"
                                    .into(),
                        });
                    } else {
                        parsed.push((o, c));
                    }
                }
            }
            parsed.sort_unstable();
            if parsed.windows(2).any(|w| w[1].0 < w[0].1) {
                errors.push(HoursError {
                    field: format!("days.{name}"),
                    message: "intervals must not overlap".into(),
                });
            }
            days[index] = parsed;
        }
        match (tz, errors.is_empty()) {
            (Some(tz), true) => Ok(BusinessHours { tz, days }),
            _ => Err(errors),
        }
    }

    /// The time zone.
    pub fn time_zone(&self) -> Tz {
        self.tz
    }

    /// Whether the business is open at `now`: `now` in the tenant's zone falls in one of
    /// that weekday's intervals (open inclusive, close exclusive).
    pub fn is_open(&self, now: DateTime<Utc>) -> bool {
        let local = now.with_timezone(&self.tz);
        let day = local.weekday().num_days_from_monday() as usize;
        // u16 is enough: minutes of a day < 1440.
        let minute = (local.hour() * 60 + local.minute()) as u16;
        self.days
            .get(day)
            .is_some_and(|d| d.iter().any(|(o, c)| *o <= minute && minute < *c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn spec(tz: &str, days: &[(&str, &str, &str)]) -> BusinessHoursSpec {
        let mut s = BusinessHoursSpec {
            time_zone: tz.into(),
            days: Default::default(),
        };
        for (d, o, c) in days {
            s.days.entry((*d).into()).or_default().push(OpenInterval {
                open: (*o).into(),
                close: (*c).into(),
            });
        }
        s
    }

    #[test]
    fn open_in_the_tenants_zone() {
        let h = BusinessHours::parse(&spec(
            "Africa/Nouakchott",
            &[("monday", "09:00", "12:00"), ("monday", "14:00", "18:00")],
        ))
        .unwrap();
        // 2026-12-07 is a Monday; Nouakchott is UTC+0.
        let at = |h, m| Utc.with_ymd_and_hms(2026, 12, 7, h, m, 0).unwrap();
        assert!(!h.is_open(at(8, 59)));
        assert!(h.is_open(at(9, 0)));
        assert!(!h.is_open(at(12, 0)));
        assert!(h.is_open(at(17, 59)));
        assert!(!h.is_open(at(18, 0)));
        // Tuesday: closed.
        assert!(!h.is_open(Utc.with_ymd_and_hms(2026, 12, 8, 10, 0, 0).unwrap()));
    }

    #[test]
    fn daylight_saving_is_followed() {
        let h =
            BusinessHours::parse(&spec("Europe/Paris", &[("sunday", "09:00", "10:00")])).unwrap();
        // 2026-03-29: Paris moves from UTC+1 to UTC+2 at 01:00 UTC. 09:00 local is 07:00 UTC.
        assert!(h.is_open(Utc.with_ymd_and_hms(2026, 3, 29, 7, 30, 0).unwrap()));
        assert!(!h.is_open(Utc.with_ymd_and_hms(2026, 3, 29, 8, 30, 0).unwrap()));
        // A week earlier (winter time) 09:00 local is 08:00 UTC.
        assert!(h.is_open(Utc.with_ymd_and_hms(2026, 3, 22, 8, 30, 0).unwrap()));
        assert!(!h.is_open(Utc.with_ymd_and_hms(2026, 3, 22, 7, 30, 0).unwrap()));
    }

    #[test]
    fn end_of_day_and_bad_fields() {
        let h = BusinessHours::parse(&spec("UTC", &[("friday", "20:00", "24:00")])).unwrap();
        assert!(h.is_open(Utc.with_ymd_and_hms(2026, 12, 4, 23, 59, 0).unwrap()));
        let errors = BusinessHours::parse(&spec(
            "Mars/Olympus",
            &[
                ("monday", "9:00", "17:00"),
                ("tuesday", "18:00", "08:00"),
                ("funday", "09:00", "10:00"),
                ("friday", "09:00", "12:00"),
                ("friday", "11:00", "13:00"),
            ],
        ))
        .unwrap_err();
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert!(fields.contains(&"time_zone"));
        assert!(fields.contains(&"days.monday[0].open"));
        assert!(fields.contains(&"days.tuesday[0].close"));
        assert!(fields.contains(&"days.funday"));
        assert!(fields.contains(&"days.friday"));
    }
}
