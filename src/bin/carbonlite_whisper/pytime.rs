//! Local time as Python's `time.localtime`/`time.ctime`/`time.strftime` print it, without
//! libc calls (the crate is unsafe-free): the zone comes from `$TZ` or /etc/localtime, read
//! as a TZif file (RFC 8536) with its POSIX-TZ footer for times past the last transition, or
//! as a POSIX TZ string; anything unreadable falls back to UTC, as glibc does.

use std::path::Path;

/// Broken-down local time, glibc's `struct tm` plus offset and abbreviation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tm {
    /// Full year.
    pub year: i64,
    /// 0–11.
    pub mon: u32,
    /// 1–31.
    pub mday: u32,
    /// 0–23.
    pub hour: u32,
    /// 0–59.
    pub min: u32,
    /// 0–60.
    pub sec: u32,
    /// 0 = Sunday.
    pub wday: u32,
    /// 0–365.
    pub yday: u32,
    /// Seconds east of UTC.
    pub gmtoff: i64,
    /// Zone abbreviation (`UTC`, `CEST`).
    pub zone: String,
    /// Unix seconds this was made from (`%s`).
    pub epoch: i64,
}

/// One local time type: offset east of UTC, DST flag, abbreviation.
#[derive(Debug, Clone, PartialEq, Eq)]
struct LocalType {
    offset: i64,
    dst: bool,
    abbr: String,
}

/// When DST starts or ends within a year (POSIX TZ rule).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DayRule {
    /// `Jn`: day 1–365, Feb 29 never counted.
    Julian1(i64),
    /// `n`: day 0–365, Feb 29 counted in leap years.
    Julian0(i64),
    /// `Mm.w.d`: weekday d of week w (5 = last) of month m.
    MonthWeekDay(u32, u32, u32),
}

/// A DST switch: the day and the local time of day in seconds.
type Switch = (DayRule, i64);

/// A POSIX TZ string (`CET-1CEST,M3.5.0,M10.5.0/3`).
#[derive(Debug, Clone, PartialEq, Eq)]
struct PosixTz {
    std: LocalType,
    dst: Option<(LocalType, Switch, Switch)>,
}

/// A time zone: transitions (UTC seconds → type index), types, and a rule for later times.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Zone {
    transitions: Vec<(i64, usize)>,
    types: Vec<LocalType>,
    footer: Option<PosixTz>,
}

impl Zone {
    /// UTC, the fallback for every unreadable zone.
    pub fn utc() -> Zone {
        Zone {
            transitions: Vec::new(),
            types: vec![utc_type()],
            footer: None,
        }
    }

    /// The process's local zone as glibc finds it: `$TZ` unset → /etc/localtime, empty → UTC,
    /// `:name` or `name` → a zoneinfo file, else a POSIX TZ string.
    pub fn local() -> Zone {
        match std::env::var("TZ") {
            Err(_) => Zone::from_file(Path::new("/etc/localtime")).unwrap_or_else(Zone::utc),
            Ok(tz) => Zone::from_tz_var(&tz),
        }
    }

    /// Interprets a `$TZ` value.
    pub fn from_tz_var(tz: &str) -> Zone {
        let name = tz.strip_prefix(':').unwrap_or(tz);
        if name.is_empty() {
            return Zone::utc();
        }
        let file = if name.starts_with('/') {
            std::path::PathBuf::from(name)
        } else {
            Path::new("/usr/share/zoneinfo").join(name)
        };
        if !name.contains("..")
            && let Some(z) = Zone::from_file(&file)
        {
            return z;
        }
        match parse_posix(name) {
            Some(p) => Zone {
                transitions: Vec::new(),
                types: vec![p.std.clone()],
                footer: Some(p),
            },
            None => Zone::utc(),
        }
    }

    /// Reads a TZif file; None if it is missing or malformed.
    pub fn from_file(path: &Path) -> Option<Zone> {
        parse_tzif(&std::fs::read(path).ok()?)
    }

    /// The local type in force at `t`.
    fn type_at(&self, t: i64) -> LocalType {
        let after_last = self.transitions.last().is_none_or(|(last, _)| t >= *last);
        if after_last && let Some(f) = &self.footer {
            return f.type_at(t);
        }
        let idx = self.transitions.partition_point(|(at, _)| *at <= t);
        if idx == 0 {
            // Before the first transition: the first non-DST type (glibc), else type 0.
            return self
                .types
                .iter()
                .find(|ty| !ty.dst)
                .or(self.types.first())
                .cloned()
                .unwrap_or_else(utc_type);
        }
        self.types
            .get(self.transitions[idx - 1].1)
            .cloned()
            .unwrap_or_else(utc_type)
    }

    /// `time.localtime(t)`.
    pub fn localtime(&self, t: i64) -> Tm {
        let ty = self.type_at(t);
        let mut tm = gmtime(t + ty.offset);
        tm.gmtoff = ty.offset;
        tm.zone = ty.abbr;
        tm.epoch = t;
        tm
    }
}

fn utc_type() -> LocalType {
    LocalType {
        offset: 0,
        dst: false,
        abbr: "UTC".into(),
    }
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

/// Broken-down UTC time of `t` (offset 0, zone `UTC`).
pub fn gmtime(t: i64) -> Tm {
    let days = t.div_euclid(86_400);
    let secs = t.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let mday = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let mon = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(mon <= 2);
    let yday = (days - days_from_civil(year, 1, 1)) as u32;
    Tm {
        year,
        mon: mon - 1,
        mday,
        hour: (secs / 3600) as u32,
        min: (secs / 60 % 60) as u32,
        sec: (secs % 60) as u32,
        wday: (days + 4).rem_euclid(7) as u32,
        yday,
        gmtoff: 0,
        zone: "UTC".into(),
        epoch: t,
    }
}

impl PosixTz {
    fn type_at(&self, t: i64) -> LocalType {
        let Some((dst, start, end)) = &self.dst else {
            return self.std.clone();
        };
        let year = gmtime(t + self.std.offset).year;
        // Check the neighbouring years too so a southern-hemisphere span across New Year works.
        for y in [year - 1, year, year + 1] {
            let s = rule_day(y, start.0) * 86_400 + start.1 - self.std.offset;
            let e = rule_day(y, end.0) * 86_400 + end.1 - dst.offset;
            if s < e {
                if t >= s && t < e {
                    return dst.clone();
                }
            } else {
                let ny_next = days_from_civil(y + 1, 1, 1) * 86_400 - self.std.offset;
                let ny = days_from_civil(y, 1, 1) * 86_400 - self.std.offset;
                if (t >= s && t < ny_next) || (t >= ny && t < e) {
                    return dst.clone();
                }
            }
        }
        self.std.clone()
    }
}

/// Days since the epoch of a POSIX rule's day in `year`.
fn rule_day(year: i64, rule: DayRule) -> i64 {
    let jan1 = days_from_civil(year, 1, 1);
    match rule {
        DayRule::Julian1(n) => jan1 + n - 1 + i64::from(is_leap(year) && n >= 60),
        DayRule::Julian0(n) => jan1 + n,
        DayRule::MonthWeekDay(m, w, d) => {
            let first = days_from_civil(year, m, 1);
            let wday_first = (first + 4).rem_euclid(7);
            let mut day =
                first + (i64::from(d) - wday_first).rem_euclid(7) + 7 * (i64::from(w) - 1);
            let next_month = if m == 12 {
                days_from_civil(year + 1, 1, 1)
            } else {
                days_from_civil(year, m + 1, 1)
            };
            while day >= next_month {
                day -= 7;
            }
            day
        }
    }
}

/// Parses a POSIX TZ string; None if malformed.
fn parse_posix(s: &str) -> Option<PosixTz> {
    let mut p = s.as_bytes();
    let std_abbr = take_abbr(&mut p)?;
    let std_off = -take_hms(&mut p)?;
    let std = LocalType {
        offset: std_off,
        dst: false,
        abbr: std_abbr,
    };
    if p.is_empty() {
        return Some(PosixTz { std, dst: None });
    }
    let dst_abbr = take_abbr(&mut p)?;
    let dst_off = if !p.is_empty() && p[0] != b',' {
        -take_hms(&mut p)?
    } else {
        std_off + 3600
    };
    let dst = LocalType {
        offset: dst_off,
        dst: true,
        abbr: dst_abbr,
    };
    let (start, end) = if p.is_empty() {
        (
            (DayRule::MonthWeekDay(3, 2, 0), 7200),
            (DayRule::MonthWeekDay(11, 1, 0), 7200),
        )
    } else {
        p = p.strip_prefix(b",")?;
        let start = take_rule(&mut p)?;
        p = p.strip_prefix(b",")?;
        let end = take_rule(&mut p)?;
        if !p.is_empty() {
            return None;
        }
        (start, end)
    };
    Some(PosixTz {
        std,
        dst: Some((dst, start, end)),
    })
}

fn take_abbr(p: &mut &[u8]) -> Option<String> {
    let (abbr, rest) = if let Some(r) = p.strip_prefix(b"<") {
        let end = r.iter().position(|b| *b == b'>')?;
        (&r[..end], &r[end + 1..])
    } else {
        let end = p
            .iter()
            .position(|b| !b.is_ascii_alphabetic())
            .unwrap_or(p.len());
        (&p[..end], &p[end..])
    };
    if abbr.len() < 3 {
        return None;
    }
    *p = rest;
    Some(String::from_utf8_lossy(abbr).into_owned())
}

fn take_num(p: &mut &[u8]) -> Option<i64> {
    let end = p
        .iter()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(p.len());
    if end == 0 || end > 9 {
        return None;
    }
    let n = std::str::from_utf8(&p[..end]).ok()?.parse().ok()?;
    *p = &p[end..];
    Some(n)
}

/// `[+-]hh[:mm[:ss]]` in seconds.
fn take_hms(p: &mut &[u8]) -> Option<i64> {
    let sign = match p.first() {
        Some(b'-') => {
            *p = &p[1..];
            -1
        }
        Some(b'+') => {
            *p = &p[1..];
            1
        }
        _ => 1,
    };
    let mut secs = take_num(p)? * 3600;
    for mul in [60, 1] {
        if let Some(r) = p.strip_prefix(b":") {
            *p = r;
            secs += take_num(p)? * mul;
        } else {
            break;
        }
    }
    Some(sign * secs)
}

fn take_rule(p: &mut &[u8]) -> Option<Switch> {
    let day = if let Some(r) = p.strip_prefix(b"J") {
        *p = r;
        DayRule::Julian1(take_num(p)?)
    } else if let Some(r) = p.strip_prefix(b"M") {
        *p = r;
        let m = take_num(p)?;
        *p = p.strip_prefix(b".")?;
        let w = take_num(p)?;
        *p = p.strip_prefix(b".")?;
        let d = take_num(p)?;
        if !(1..=12).contains(&m) || !(1..=5).contains(&w) || d > 6 {
            return None;
        }
        DayRule::MonthWeekDay(m as u32, w as u32, d as u32)
    } else {
        DayRule::Julian0(take_num(p)?)
    };
    let time = if let Some(r) = p.strip_prefix(b"/") {
        *p = r;
        take_hms(p)?
    } else {
        7200
    };
    Some((day, time))
}

fn be_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Parses TZif v1–v4, preferring the 64-bit block of v2+.
fn parse_tzif(b: &[u8]) -> Option<Zone> {
    let (z, end) = parse_tzif_block(b, 0, 4)?;
    let version = *b.get(4)?;
    if version < b'2' {
        return Some(z);
    }
    let (mut z, end) = parse_tzif_block(b, end, 8)?;
    let footer = b.get(end..)?;
    if footer.first() == Some(&b'\n')
        && let Some(nl) = footer[1..].iter().position(|c| *c == b'\n')
    {
        let text = std::str::from_utf8(&footer[1..1 + nl]).ok()?;
        z.footer = if text.is_empty() {
            None
        } else {
            parse_posix(text)
        };
    }
    Some(z)
}

/// One header + data block; `tsize` is 4 (v1) or 8 (v2+). Returns the zone and end offset.
fn parse_tzif_block(b: &[u8], start: usize, tsize: usize) -> Option<(Zone, usize)> {
    if b.get(start..start + 4)? != b"TZif" {
        return None;
    }
    let count = |i: usize| be_u32(b, start + 20 + 4 * i).map(|v| v as usize);
    let (isutcnt, isstdcnt, leapcnt, timecnt, typecnt, charcnt) = (
        count(0)?,
        count(1)?,
        count(2)?,
        count(3)?,
        count(4)?,
        count(5)?,
    );
    if typecnt == 0 || typecnt > 256 {
        return None;
    }
    let mut at = start + 44;
    let times_at = at;
    at += timecnt * tsize;
    let idx_at = at;
    at += timecnt;
    let types_at = at;
    at += typecnt * 6;
    let chars_at = at;
    at += charcnt;
    at += leapcnt * (tsize + 4) + isstdcnt + isutcnt;
    if at > b.len() {
        return None;
    }
    let chars = &b[chars_at..chars_at + charcnt];
    let mut types = Vec::with_capacity(typecnt);
    for i in 0..typecnt {
        let o = types_at + 6 * i;
        let offset = i64::from(be_u32(b, o)? as i32);
        let ai = usize::from(b[o + 5]);
        let tail = chars.get(ai..)?;
        let end = tail.iter().position(|c| *c == 0).unwrap_or(tail.len());
        types.push(LocalType {
            offset,
            dst: b[o + 4] != 0,
            abbr: String::from_utf8_lossy(&tail[..end]).into_owned(),
        });
    }
    let mut transitions = Vec::with_capacity(timecnt);
    for i in 0..timecnt {
        let o = times_at + tsize * i;
        let t = if tsize == 8 {
            i64::from_be_bytes(b[o..o + 8].try_into().ok()?)
        } else {
            i64::from(be_u32(b, o)? as i32)
        };
        let ty = usize::from(b[idx_at + i]);
        if ty >= typecnt {
            return None;
        }
        transitions.push((t, ty));
    }
    Some((
        Zone {
            transitions,
            types,
            footer: None,
        },
        at,
    ))
}

const DAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];
const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

/// `time.ctime(t)` in `zone`: `Thu Jan  1 00:00:00 1970`.
pub fn ctime(zone: &Zone, t: i64) -> String {
    let tm = zone.localtime(t);
    format!(
        "{} {}{:>3} {:02}:{:02}:{:02} {}",
        &DAYS[tm.wday as usize][..3],
        &MONTHS[tm.mon as usize][..3],
        tm.mday,
        tm.hour,
        tm.min,
        tm.sec,
        tm.year
    )
}

/// ISO 8601 week-based year and week number.
fn iso_week(tm: &Tm) -> (i64, u32) {
    let wday = (tm.wday + 6) % 7; // Monday = 0
    let yday = i64::from(tm.yday);
    let mut year = tm.year;
    let mut week = (yday - i64::from(wday) + 10) / 7;
    if week < 1 {
        year -= 1;
        let prev_days = if is_leap(year) { 366 } else { 365 };
        week = (yday + prev_days - i64::from(wday) + 10) / 7;
    } else {
        let days = if is_leap(year) { 366 } else { 365 };
        if week == 53 && yday - i64::from(wday) + 3 >= days {
            year += 1;
            week = 1;
        }
    }
    (year, week as u32)
}

/// glibc `strftime` in the C locale for the conversions people use; unknown ones are copied
/// through as glibc does.
pub fn strftime(fmt: &str, tm: &Tm) -> String {
    let mut out = String::new();
    let mut chars = fmt.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let Some(d) = chars.next() else {
            out.push('%');
            break;
        };
        let hour12 = if tm.hour.is_multiple_of(12) {
            12
        } else {
            tm.hour % 12
        };
        let s = match d {
            'a' => DAYS[tm.wday as usize][..3].to_string(),
            'A' => DAYS[tm.wday as usize].to_string(),
            'b' | 'h' => MONTHS[tm.mon as usize][..3].to_string(),
            'B' => MONTHS[tm.mon as usize].to_string(),
            'c' => strftime("%a %b %e %H:%M:%S %Y", tm),
            'C' => format!("{:02}", tm.year.div_euclid(100)),
            'd' => format!("{:02}", tm.mday),
            'D' | 'x' => strftime("%m/%d/%y", tm),
            'e' => format!("{:>2}", tm.mday),
            'F' => strftime("%Y-%m-%d", tm),
            'G' => iso_week(tm).0.to_string(),
            'g' => format!("{:02}", iso_week(tm).0.rem_euclid(100)),
            'H' => format!("{:02}", tm.hour),
            'I' => format!("{hour12:02}"),
            'j' => format!("{:03}", tm.yday + 1),
            'k' => format!("{:>2}", tm.hour),
            'l' => format!("{hour12:>2}"),
            'm' => format!("{:02}", tm.mon + 1),
            'M' => format!("{:02}", tm.min),
            'n' => "\n".to_string(),
            'p' => (if tm.hour < 12 { "AM" } else { "PM" }).to_string(),
            'P' => (if tm.hour < 12 { "am" } else { "pm" }).to_string(),
            'r' => strftime("%I:%M:%S %p", tm),
            'R' => strftime("%H:%M", tm),
            's' => tm.epoch.to_string(),
            'S' => format!("{:02}", tm.sec),
            't' => "\t".to_string(),
            'T' | 'X' => strftime("%H:%M:%S", tm),
            'u' => (if tm.wday == 0 { 7 } else { tm.wday }).to_string(),
            'U' => format!("{:02}", (tm.yday + 7 - tm.wday) / 7),
            'V' => format!("{:02}", iso_week(tm).1),
            'w' => tm.wday.to_string(),
            'W' => format!("{:02}", (tm.yday + 7 - (tm.wday + 6) % 7) / 7),
            'y' => format!("{:02}", tm.year.rem_euclid(100)),
            'Y' => tm.year.to_string(),
            'z' => {
                let off = tm.gmtoff.abs();
                format!(
                    "{}{:02}{:02}",
                    if tm.gmtoff < 0 { '-' } else { '+' },
                    off / 3600,
                    off / 60 % 60
                )
            }
            'Z' => tm.zone.clone(),
            '%' => "%".to_string(),
            other => format!("%{other}"),
        };
        out.push_str(&s);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gmtime_and_ctime_in_utc() {
        let utc = Zone::utc();
        assert_eq!(ctime(&utc, 0), "Thu Jan  1 00:00:00 1970");
        assert_eq!(ctime(&utc, 1_700_000_000), "Tue Nov 14 22:13:20 2023");
        assert_eq!(ctime(&utc, 951_782_400), "Tue Feb 29 00:00:00 2000");
        let tm = gmtime(4_294_967_295);
        assert_eq!((tm.year, tm.mon, tm.mday, tm.hour), (2106, 1, 7, 6));
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
    }

    #[test]
    fn strftime_conversions() {
        let tm = Zone::utc().localtime(1_700_000_000);
        assert_eq!(strftime("%Y-%m-%d %H:%M:%S", &tm), "2023-11-14 22:13:20");
        assert_eq!(
            strftime("%a %A %b %B %e %j %p %I %y %Z %z %s %%", &tm),
            "Tue Tuesday Nov November 14 318 PM 10 23 UTC +0000 1700000000 %"
        );
        assert_eq!(
            strftime("%c|%D|%F|%T|%R|%u|%w|%U|%W|%V|%G|%Q", &tm),
            "Tue Nov 14 22:13:20 2023|11/14/23|2023-11-14|22:13:20|22:13|2|2|46|46|46|2023|%Q"
        );
        // 2021-01-01 is a Friday in ISO week 53 of 2020.
        let tm = gmtime(1_609_459_200);
        assert_eq!(strftime("%G-W%V-%u %U %W", &tm), "2020-W53-5 00 00");
    }

    #[test]
    fn posix_rules_switch_dst() {
        let z = Zone::from_tz_var("CET-1CEST,M3.5.0,M10.5.0/3");
        // 2023-07-01 12:00 UTC is 14:00 CEST; 2023-01-01 12:00 UTC is 13:00 CET.
        let s = z.localtime(1_688_212_800);
        assert_eq!((s.hour, s.zone.as_str(), s.gmtoff), (14, "CEST", 7200));
        let w = z.localtime(1_672_574_400);
        assert_eq!((w.hour, w.zone.as_str(), w.gmtoff), (13, "CET", 3600));
        // DST starts 2023-03-26 01:00 UTC.
        assert_eq!(z.localtime(1_679_792_399).zone, "CET");
        assert_eq!(z.localtime(1_679_792_400).zone, "CEST");
        // Southern hemisphere: AEST-10AEDT,M10.1.0,M4.1.0/3; January is summer.
        let au = Zone::from_tz_var("AEST-10AEDT,M10.1.0,M4.1.0/3");
        assert_eq!(au.localtime(1_672_574_400).zone, "AEDT");
        assert_eq!(au.localtime(1_688_212_800).zone, "AEST");
        assert_eq!(Zone::from_tz_var("").localtime(0).zone, "UTC");
        assert_eq!(Zone::from_tz_var("EST5").localtime(0).hour, 19);
    }

    #[test]
    fn zoneinfo_files_when_installed() {
        // The zoneinfo database is part of the test machine's setup (tzdata); fail loudly if
        // it is missing rather than testing nothing.
        let z = Zone::from_file(Path::new("/usr/share/zoneinfo/Europe/Paris"))
            .expect("tzdata installed");
        assert_eq!(z.localtime(1_688_212_800).zone, "CEST");
        assert_eq!(z.localtime(1_672_574_400).zone, "CET");
        // Far future: decided by the footer rule.
        assert_eq!(z.localtime(4_100_000_000).gmtoff, 3600); // 2099-12-03, CET
        let summer = z.localtime(4_118_126_400); // 2100-07-01 12:00 UTC
        assert_eq!(
            (summer.hour, summer.gmtoff, summer.zone.as_str()),
            (14, 7200, "CEST")
        );
    }
}
