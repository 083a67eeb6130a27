//! Pipeline vars: typed from how the YAML writes them, or from `{ type, value }`, and then
//! overridden by `--var name=value` in the declared type.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use super::{Validator, is_identifier};
use crate::hint::did_you_mean;
use crate::pipeline::diagnostics::Problem;
use crate::pipeline::keys::Key;
use crate::pipeline::model::RUN_PARAMETERS;
use crate::pipeline::types::{VarType, VarValue};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTypedVar {
    #[serde(rename = "type")]
    ty: String,
    value: Value,
}

impl Validator<'_> {
    pub(super) fn vars(
        &mut self,
        raw: &BTreeMap<Key, Value>,
        overrides: &[(String, String)],
    ) -> BTreeMap<String, VarValue> {
        let mut vars = BTreeMap::new();
        let mut lines = BTreeMap::new();
        for (key, value) in raw {
            let name = key.name();
            if RUN_PARAMETERS.contains(&name) {
                self.problem(
                    key.line(),
                    format!("'{name}' is set by segflow for each run and cannot be a var"),
                );
                continue;
            }
            if !is_identifier(name) {
                self.problem(
                    key.line(),
                    format!("var name '{name}' must be lower-case letters, digits and '_'"),
                );
                continue;
            }
            match var_from_yaml(value) {
                Ok(value) => {
                    vars.insert(name.to_string(), value);
                    lines.insert(name, key.line());
                }
                Err(message) => self.problem(key.line(), format!("var '{name}': {message}")),
            }
        }
        for (name, text) in overrides {
            let Some(declared) = vars.get(name) else {
                let hint = did_you_mean(name, vars.keys().map(String::as_str));
                self.problems.push(Problem {
                    file: self.file.clone(),
                    line: None,
                    message: format!("--var {name}: the pipeline declares no var '{name}'{hint}"),
                });
                continue;
            };
            let ty = declared.var_type();
            match VarValue::parse_as(&ty, text) {
                Ok(value) => {
                    vars.insert(name.clone(), value);
                }
                Err(message) => self.problem(
                    lines.get(name.as_str()).copied().flatten(),
                    format!("--var {name}={text}: {message}; the var is declared as {ty}"),
                ),
            }
        }
        vars
    }
}

fn var_from_yaml(value: &Value) -> Result<VarValue, String> {
    match value {
        Value::Bool(b) => Ok(VarValue::Bool(*b)),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Ok(VarValue::Int(i)),
            None => n
                .as_f64()
                .map(VarValue::Float)
                .ok_or_else(|| format!("{n} is out of range")),
        },
        Value::String(s) => Ok(VarValue::String(s.clone())),
        Value::Object(_) => {
            let typed: RawTypedVar = serde_json::from_value(value.clone()).map_err(|e| {
                format!("write it as a value or as {{ type: ..., value: ... }}: {e}")
            })?;
            typed_var(&typed)
        }
        Value::Array(_) => {
            Err("a list needs its item type: write { type: list<int>, value: [...] }".to_string())
        }
        Value::Null => Err("it has no value".to_string()),
    }
}

fn typed_var(typed: &RawTypedVar) -> Result<VarValue, String> {
    let ty_text = typed.ty.trim();
    let ty = if let Some(item) = ty_text
        .strip_prefix("list<")
        .and_then(|t| t.strip_suffix('>'))
    {
        VarType::List(Box::new(
            VarType::parse(item).ok_or_else(|| format!("unknown list item type '{item}'"))?,
        ))
    } else {
        VarType::parse(ty_text).ok_or_else(|| {
            format!("unknown type '{ty_text}' (use int, float, string, date, bool or list<type>)")
        })?
    };
    let scalar_text = |value: &Value| -> Result<String, String> {
        match value {
            Value::String(s) => Ok(s.clone()),
            Value::Number(n) => Ok(n.to_string()),
            Value::Bool(b) => Ok(b.to_string()),
            _ => Err(format!("expected a single {ty} value")),
        }
    };
    match (&ty, &typed.value) {
        (VarType::List(item), Value::Array(items)) => {
            let values = items
                .iter()
                .map(|v| scalar_text(v).and_then(|t| VarValue::parse_as(item, &t)))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(VarValue::List((**item).clone(), values))
        }
        (VarType::List(_), other) => VarValue::parse_as(&ty, &scalar_text(other)?),
        (_, value) => VarValue::parse_as(&ty, &scalar_text(value)?),
    }
}
