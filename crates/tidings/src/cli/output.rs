//! Printing API answers: `--json` prints them as they came; otherwise a `key: value` block
//! for one item, or an aligned table for a list.

use serde_json::Value;

fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(a) => a.iter().map(cell).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}

pub fn print_item(json: bool, v: &Value, fields: &[&str]) {
    if json {
        println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
        return;
    }
    let width = fields.iter().map(|f| f.len()).max().unwrap_or(0);
    for f in fields {
        if let Some(x) = v.get(*f) {
            if !x.is_null() {
                println!("{f:width$}  {}", cell(x));
            }
        }
    }
}

pub fn print_list(json: bool, items: &[Value], fields: &[&str]) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(items).unwrap_or_default()
        );
        return;
    }
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|i| fields.iter().map(|f| cell(&i[*f])).collect())
        .collect();
    let widths: Vec<usize> = fields
        .iter()
        .enumerate()
        .map(|(c, f)| {
            rows.iter()
                .map(|r| r[c].len())
                .chain([f.len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:w$}"))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    println!(
        "{}",
        line(fields.iter().map(|f| f.to_uppercase()).collect())
    );
    for r in rows {
        println!("{}", line(r));
    }
}
