//! A strict reader of the text exposition format, enough to check what [`super::render_prometheus`] writes and to read
//! values back in tests: every sample must belong to a family announced by `# HELP` and `# TYPE`, counters end in
//! `_total`, histograms have cumulative `le` buckets ending in `+Inf` and matching `_count`.

use std::collections::{BTreeMap, HashMap};

/// Sample name with its labels as written (`name{a="b"}`) → value.
pub type Samples = BTreeMap<String, f64>;

pub fn parse(text: &str) -> Result<Samples, String> {
    let mut types: HashMap<String, String> = HashMap::new();
    let mut helped: HashMap<String, bool> = HashMap::new();
    let mut out = Samples::new();
    for (n, line) in text.lines().enumerate() {
        let err = |m: &str| format!("line {}: {m}: {line}", n + 1);
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let name = rest.split(' ').next().unwrap_or("");
            check_name(name).map_err(|e| err(&e))?;
            if helped.insert(name.into(), true).is_some() {
                return Err(err("second HELP for a family"));
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut it = rest.split(' ');
            let (name, kind) = (it.next().unwrap_or(""), it.next().unwrap_or(""));
            check_name(name).map_err(|e| err(&e))?;
            if !["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind) {
                return Err(err("unknown type"));
            }
            if kind == "counter" && !name.ends_with("_total") {
                return Err(err("counter name must end in _total"));
            }
            if types.insert(name.into(), kind.into()).is_some() {
                return Err(err("second TYPE for a family"));
            }
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let (key, value) = line.rsplit_once(' ').ok_or_else(|| err("no value"))?;
        let v: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().map_err(|_| err("bad value"))?,
        };
        let name = key.split('{').next().unwrap_or("");
        check_name(name).map_err(|e| err(&e))?;
        if let Some(labels) = key.strip_prefix(name) {
            let braced = labels.starts_with('{') && labels.ends_with('}');
            if !labels.is_empty() && !braced {
                return Err(err("bad label set"));
            }
        }
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s)
                    .filter(|f| types.get(*f).is_some_and(|t| t == "histogram"))
            })
            .unwrap_or(name);
        if !types.contains_key(family) || !helped.contains_key(family) {
            return Err(err("sample without HELP and TYPE"));
        }
        if types[family] == "counter" && v < 0.0 {
            return Err(err("negative counter"));
        }
        if out.insert(key.to_string(), v).is_some() {
            return Err(err("duplicate sample"));
        }
    }
    check_histograms(&types, &out)?;
    Ok(out)
}

fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
    if ok {
        Ok(())
    } else {
        Err(format!("bad metric name {name:?}"))
    }
}

fn check_histograms(types: &HashMap<String, String>, s: &Samples) -> Result<(), String> {
    for (fam, _) in types.iter().filter(|(_, t)| *t == "histogram") {
        let prefix = format!("{fam}_bucket{{");
        let mut series: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
        for (k, v) in s.range(prefix.clone()..) {
            let Some(labels) = k.strip_prefix(&prefix) else {
                break;
            };
            let (rest, le) = labels
                .rsplit_once("le=\"")
                .ok_or_else(|| format!("{k}: bucket without le"))?;
            let le = le.trim_end_matches("\"}");
            let le: f64 = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().map_err(|_| format!("{k}: bad le"))?
            };
            series.entry(rest.to_string()).or_default().push((le, *v));
        }
        for (labels, mut b) in series {
            b.sort_by(|x, y| x.0.total_cmp(&y.0));
            if b.last().map(|x| x.0) != Some(f64::INFINITY) {
                return Err(format!("{fam}{{{labels}}}: no +Inf bucket"));
            }
            if b.windows(2).any(|w| w[1].1 < w[0].1) {
                return Err(format!("{fam}{{{labels}}}: buckets not cumulative"));
            }
            let labels = labels.trim_end_matches(',');
            let count_key = if labels.is_empty() {
                format!("{fam}_count")
            } else {
                format!("{fam}_count{{{labels}}}")
            };
            if s.get(&count_key) != b.last().map(|x| &x.1) {
                return Err(format!("{count_key}: does not match the +Inf bucket"));
            }
        }
    }
    Ok(())
}
