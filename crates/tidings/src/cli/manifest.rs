//! `tidings apps apply|export|validate`: an app as code, through the App Manifest API
//! (`apps.manifest.*`) with a developer's configuration token (`TIDINGS_CONFIG_TOKEN`),
//! not the operator's. Manifests are read from YAML or JSON (YAML through `yaml-rust2`;
//! JSON is YAML, so one parser reads both); `apply` prints what it changed.

use std::path::PathBuf;

use clap::Args;
use serde_json::{Map, Value};
use yaml_rust2::{Yaml, YamlLoader};

use super::Global;

/// The developer's configuration token and the manifest file.
#[derive(Args, Debug)]
pub struct ManifestOpts {
    /// The manifest, YAML or JSON (`-` reads standard input).
    #[arg(short = 'f', long)]
    pub file: PathBuf,
    /// The app to update (else `apply` creates one, owned by the token's user).
    #[arg(long, env = "TIDINGS_APP_ID")]
    pub app: Option<String>,
    #[command(flatten)]
    pub token: ConfigToken,
}

#[derive(Args, Debug)]
pub struct ConfigToken {
    /// A configuration token (`xoxe.xoxp-…`, from `POST /admin/v1/config_tokens`).
    #[arg(long, env = "TIDINGS_CONFIG_TOKEN", hide_env_values = true)]
    pub config_token: Option<String>,
}

#[derive(Args, Debug)]
pub struct ExportOpts {
    pub app: String,
    #[command(flatten)]
    pub token: ConfigToken,
}

/// Reads a manifest file (YAML or JSON) as JSON.
pub fn read(path: &PathBuf) -> Result<Value, String> {
    let text = if path.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).map_err(|e| format!("cannot read stdin: {e}"))?
    } else {
        std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?
    };
    parse(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// YAML (or JSON) text as JSON: one document, whose keys are strings.
pub fn parse(text: &str) -> Result<Value, String> {
    let docs = YamlLoader::load_from_str(text).map_err(|e| format!("not YAML or JSON: {e}"))?;
    match docs.as_slice() {
        [doc] => to_json(doc),
        [] => Err("the file is empty".into()),
        _ => Err("the file holds more than one YAML document".into()),
    }
}

fn to_json(y: &Yaml) -> Result<Value, String> {
    Ok(match y {
        Yaml::Null => Value::Null,
        Yaml::Boolean(b) => Value::Bool(*b),
        Yaml::Integer(i) => Value::from(*i),
        Yaml::Real(r) => r
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .ok_or_else(|| format!("{r} is not a number JSON can hold"))?,
        Yaml::String(s) => Value::String(s.clone()),
        Yaml::Array(items) => Value::Array(items.iter().map(to_json).collect::<Result<_, _>>()?),
        Yaml::Hash(h) => {
            let mut m = Map::new();
            for (k, v) in h {
                let key = match k {
                    Yaml::String(s) => s.clone(),
                    Yaml::Integer(i) => i.to_string(),
                    Yaml::Boolean(b) => b.to_string(),
                    other => return Err(format!("a key must be a string, not {other:?}")),
                };
                m.insert(key, to_json(v)?);
            }
            Value::Object(m)
        }
        Yaml::Alias(_) | Yaml::BadValue => return Err("unsupported YAML value".into()),
    })
}

/// One Web API call with the configuration token; `ok:false` becomes one line (with the
/// manifest's problems, each with its pointer).
async fn call(
    g: &Global,
    token: &ConfigToken,
    method: &str,
    form: &[(&str, &str)],
) -> Result<Value, String> {
    let token = token
        .config_token
        .as_deref()
        .ok_or("no configuration token: set TIDINGS_CONFIG_TOKEN or --config-token")?;
    let http = reqwest::Client::builder()
        .user_agent(concat!("tidings-cli/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
    let url = format!("{}/api/{method}", g.url.trim_end_matches('/'));
    let res = http
        .post(&url)
        .bearer_auth(token)
        .form(form)
        .send()
        .await
        .map_err(|e| format!("cannot reach {url}: {e}"))?;
    let v: Value = res
        .json()
        .await
        .map_err(|e| format!("{method}: the answer is not JSON: {e}"))?;
    if v["ok"] == true {
        return Ok(v);
    }
    let mut line = format!("{method}: {}", v["error"].as_str().unwrap_or("error"));
    for e in v["errors"].as_array().into_iter().flatten() {
        line.push_str(&format!(
            "; {} at {}",
            e["message"].as_str().unwrap_or(""),
            e["pointer"].as_str().unwrap_or("/")
        ));
    }
    Err(line)
}

/// `tidings apps validate -f app.yaml [--app A…]`.
pub async fn validate(g: &Global, o: ManifestOpts) -> Result<(), String> {
    let m = read(&o.file)?.to_string();
    let mut form = vec![("manifest", m.as_str())];
    if let Some(a) = &o.app {
        form.push(("app_id", a));
    }
    call(g, &o.token, "apps.manifest.validate", &form).await?;
    println!("{}: the manifest is valid", o.file.display());
    Ok(())
}

/// `tidings apps export A…`: the app's manifest as JSON.
pub async fn export(g: &Global, o: ExportOpts) -> Result<(), String> {
    let v = call(g, &o.token, "apps.manifest.export", &[("app_id", &o.app)]).await?;
    println!(
        "{}",
        serde_json::to_string_pretty(&v["manifest"]).unwrap_or_default()
    );
    Ok(())
}

/// `tidings apps apply -f app.yaml [--app A…]`: updates the app (printing the difference
/// from what it was), or creates one (printing its id and credentials once).
pub async fn apply(g: &Global, o: ManifestOpts) -> Result<(), String> {
    let new = read(&o.file)?;
    let text = new.to_string();
    let Some(app) = &o.app else {
        let v = call(g, &o.token, "apps.manifest.create", &[("manifest", &text)]).await?;
        if g.json {
            println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        } else {
            for line in diff(&Value::Null, &new) {
                println!("{line}");
            }
            println!("created app {}", v["app_id"].as_str().unwrap_or(""));
            for (k, c) in v["credentials"].as_object().into_iter().flatten() {
                println!("  {k}: {}", c.as_str().unwrap_or(""));
            }
            println!(
                "  oauth_authorize_url: {}",
                v["oauth_authorize_url"].as_str().unwrap_or("")
            );
            println!(
                "(credentials are shown once; apply again with --app {})",
                v["app_id"].as_str().unwrap_or("")
            );
        }
        return Ok(());
    };
    let old = call(g, &o.token, "apps.manifest.export", &[("app_id", app)]).await?;
    let v = call(
        g,
        &o.token,
        "apps.manifest.update",
        &[("app_id", app), ("manifest", &text)],
    )
    .await?;
    if g.json {
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return Ok(());
    }
    let changes = diff(&old["manifest"], &new);
    if changes.is_empty() {
        println!("app {app}: no change");
    }
    for line in changes {
        println!("{line}");
    }
    if v["permissions_updated"] == true {
        println!("app {app}: scopes changed: installations get them when they are re-authorized");
    }
    Ok(())
}

/// What changed from `old` to `new`, one line per leaf: `+ /ptr: v`, `- /ptr: v`,
/// `~ /ptr: a -> b`. Lists are compared whole.
pub fn diff(old: &Value, new: &Value) -> Vec<String> {
    let mut out = Vec::new();
    walk("", old, new, &mut out);
    out
}

fn walk(ptr: &str, old: &Value, new: &Value, out: &mut Vec<String>) {
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                let here = format!("{ptr}/{}", k.replace('~', "~0").replace('/', "~1"));
                match b.get(k) {
                    Some(w) => walk(&here, v, w, out),
                    None => out.push(format!("- {here}: {v}")),
                }
            }
            for (k, w) in b.iter().filter(|(k, _)| !a.contains_key(*k)) {
                let here = format!("{ptr}/{}", k.replace('~', "~0").replace('/', "~1"));
                walk(&here, &Value::Null, w, out);
            }
        }
        (Value::Null, Value::Object(b)) => {
            for (k, w) in b {
                let here = format!("{ptr}/{}", k.replace('~', "~0").replace('/', "~1"));
                walk(&here, &Value::Null, w, out);
            }
        }
        (Value::Null, v) => out.push(format!("+ {ptr}: {v}")),
        (a, b) if a != b => out.push(format!("~ {ptr}: {a} -> {b}")),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn yaml_and_json_read_alike() {
        let y = "display_information:\n  name: Hi\nsettings:\n  socket_mode_enabled: true\n  bot_events: [a, b]\n";
        let j = r#"{"display_information":{"name":"Hi"},"settings":{"socket_mode_enabled":true,"bot_events":["a","b"]}}"#;
        assert_eq!(parse(y).unwrap(), parse(j).unwrap());
        assert!(parse("a: [").is_err());
        assert!(parse("").is_err());
    }

    #[test]
    fn diff_names_every_changed_leaf() {
        let old = json!({"a": {"b": 1, "c": [1]}, "gone": true});
        let new = json!({"a": {"b": 2, "c": [1]}, "new": {"x": "y"}});
        assert_eq!(
            diff(&old, &new),
            ["~ /a/b: 1 -> 2", "- /gone: true", "+ /new/x: \"y\""]
        );
    }
}
