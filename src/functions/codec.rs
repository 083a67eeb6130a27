//! segflow's functions in plans sent to a cluster. DataFusion's protocol sends a function's
//! name alone and looks it up in the receiver's registry, which would lose the settings each
//! of segflow's functions carries; these codecs send the settings (JSON) beside the name,
//! and build the same function from them on the scheduler and the executors. Everything
//! else is left to the codecs they wrap (Ballista's).

use std::sync::Arc;

use chrono_tz::Tz;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::TableProvider;
use datafusion::common::{TableReference, exec_datafusion_err};
use datafusion::datasource::file_format::FileFormatFactory;
use datafusion::error::Result;
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{AggregateUDF, Extension, LogicalPlan, ScalarUDF};
use datafusion::physical_plan::ExecutionPlan;
use datafusion_proto::logical_plan::LogicalExtensionCodec;
use datafusion_proto::physical_plan::{PhysicalExtensionCodec, PhysicalProtoConverterExtension};
use serde::{Deserialize, Serialize};

use super::decimals::TextToDecimal;
use super::instants::{TextToInstant, WallClockToInstant};

/// What makes each function what it is, as it travels.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "function", rename_all = "snake_case")]
enum Settings {
    TextToInstant {
        column: String,
        source: String,
        shown_in: String,
    },
    WallClockToInstant {
        source: String,
        shown_in: String,
    },
    TextToDecimal {
        column: String,
        precision: u8,
        scale: i8,
    },
}

impl Settings {
    fn of(function: &ScalarUDF) -> Option<Settings> {
        let inner = function.inner();
        if let Some(f) = inner.downcast_ref::<TextToInstant>() {
            Some(Settings::TextToInstant {
                column: f.column.clone(),
                source: f.wall_clock.source.name().to_string(),
                shown_in: f.wall_clock.shown_in.name().to_string(),
            })
        } else if let Some(f) = inner.downcast_ref::<WallClockToInstant>() {
            Some(Settings::WallClockToInstant {
                source: f.source.name().to_string(),
                shown_in: f.shown_in.name().to_string(),
            })
        } else {
            inner
                .downcast_ref::<TextToDecimal>()
                .map(|f| Settings::TextToDecimal {
                    column: f.column.clone(),
                    precision: f.precision,
                    scale: f.scale,
                })
        }
    }

    fn function(self) -> Result<ScalarUDF> {
        let zone = |name: String| {
            name.parse::<Tz>()
                .map_err(|_| exec_datafusion_err!("'{name}' is not a timezone this build knows"))
        };
        Ok(match self {
            Settings::TextToInstant {
                column,
                source,
                shown_in,
            } => ScalarUDF::from(TextToInstant::new(&column, zone(source)?, zone(shown_in)?)),
            Settings::WallClockToInstant { source, shown_in } => {
                ScalarUDF::from(WallClockToInstant::new(zone(source)?, zone(shown_in)?))
            }
            Settings::TextToDecimal {
                column,
                precision,
                scale,
            } => ScalarUDF::from(TextToDecimal::new(&column, precision, scale)),
        })
    }
}

/// Writes `function`'s settings into `buf` when it is one of segflow's (nothing otherwise:
/// DataFusion's own functions travel by name).
fn encode(function: &ScalarUDF, buf: &mut Vec<u8>) -> Result<()> {
    if let Some(settings) = Settings::of(function) {
        serde_json::to_writer(buf, &settings)
            .map_err(|e| exec_datafusion_err!("function {}: {e}", function.name()))?;
    }
    Ok(())
}

/// The function `name` built from the settings [`encode`] wrote (or from its name alone,
/// for the models' functions, which have no settings).
fn decode(name: &str, buf: &[u8]) -> Result<Arc<ScalarUDF>> {
    if let Some(function) = super::models::scalar_named(name) {
        return Ok(Arc::new(function));
    }
    if let Some(function) = json_named(name) {
        return Ok(function);
    }
    let settings: Settings = serde_json::from_slice(buf).map_err(|e| {
        exec_datafusion_err!(
            "the function {name} arrived with settings this segflow cannot read ({e}): \
             are the client and the cluster the same version of segflow?"
        )
    })?;
    let function = settings.function()?;
    if function.name() != name {
        return Err(exec_datafusion_err!(
            "the function {name} arrived with the settings of {}",
            function.name()
        ));
    }
    Ok(Arc::new(function))
}

/// datafusion-functions-json's function `name`: they carry no settings, and a cluster's
/// processes know them only through segflow.
fn json_named(name: &str) -> Option<Arc<ScalarUDF>> {
    use datafusion_functions_json::udfs;
    [
        udfs::json_get_udf(),
        udfs::json_get_bool_udf(),
        udfs::json_get_float_udf(),
        udfs::json_get_int_udf(),
        udfs::json_get_json_udf(),
        udfs::json_get_array_udf(),
        udfs::json_get_str_udf(),
        udfs::json_as_text_udf(),
        udfs::json_contains_udf(),
        udfs::json_length_udf(),
        udfs::json_object_keys_udf(),
        udfs::json_from_scalar_udf(),
        udfs::json_union_to_text_udf(),
    ]
    .into_iter()
    .find(|function| function.name() == name)
}

/// The aggregate `name` when it is one of segflow's (built by name: they have no settings),
/// else what `otherwise` decodes.
fn decode_aggregate(
    name: &str,
    otherwise: impl FnOnce() -> Result<Arc<AggregateUDF>>,
) -> Result<Arc<AggregateUDF>> {
    match super::models::aggregate_named(name) {
        Some(function) => Ok(Arc::new(function)),
        None => otherwise(),
    }
}

/// A logical-plan codec: `inner`'s, with segflow's functions.
#[derive(Debug)]
pub struct LogicalCodec {
    inner: Arc<dyn LogicalExtensionCodec>,
}

impl LogicalCodec {
    pub fn wrapping(inner: Arc<dyn LogicalExtensionCodec>) -> LogicalCodec {
        LogicalCodec { inner }
    }
}

impl LogicalExtensionCodec for LogicalCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[LogicalPlan],
        ctx: &TaskContext,
    ) -> Result<Extension> {
        self.inner.try_decode(buf, inputs, ctx)
    }

    fn try_encode(&self, node: &Extension, buf: &mut Vec<u8>) -> Result<()> {
        self.inner.try_encode(node, buf)
    }

    fn try_decode_table_provider(
        &self,
        buf: &[u8],
        table_ref: &TableReference,
        schema: SchemaRef,
        ctx: &TaskContext,
    ) -> Result<Arc<dyn TableProvider>> {
        self.inner
            .try_decode_table_provider(buf, table_ref, schema, ctx)
    }

    fn try_encode_table_provider(
        &self,
        table_ref: &TableReference,
        node: Arc<dyn TableProvider>,
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        self.inner.try_encode_table_provider(table_ref, node, buf)
    }

    fn try_decode_file_format(
        &self,
        buf: &[u8],
        ctx: &TaskContext,
    ) -> Result<Arc<dyn FileFormatFactory>> {
        self.inner.try_decode_file_format(buf, ctx)
    }

    fn try_encode_file_format(
        &self,
        buf: &mut Vec<u8>,
        node: Arc<dyn FileFormatFactory>,
    ) -> Result<()> {
        self.inner.try_encode_file_format(buf, node)
    }

    fn try_decode_udf(&self, name: &str, buf: &[u8]) -> Result<Arc<ScalarUDF>> {
        decode(name, buf)
    }

    fn try_encode_udf(&self, function: &ScalarUDF, buf: &mut Vec<u8>) -> Result<()> {
        encode(function, buf)
    }

    fn try_decode_udaf(&self, name: &str, buf: &[u8]) -> Result<Arc<AggregateUDF>> {
        decode_aggregate(name, || self.inner.try_decode_udaf(name, buf))
    }

    fn try_encode_udaf(&self, function: &AggregateUDF, buf: &mut Vec<u8>) -> Result<()> {
        self.inner.try_encode_udaf(function, buf)
    }
}

/// A physical-plan codec: `inner`'s, with segflow's functions.
#[derive(Debug)]
pub struct PhysicalCodec {
    inner: Arc<dyn PhysicalExtensionCodec>,
}

impl PhysicalCodec {
    pub fn wrapping(inner: Arc<dyn PhysicalExtensionCodec>) -> PhysicalCodec {
        PhysicalCodec { inner }
    }
}

impl PhysicalExtensionCodec for PhysicalCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        ctx: &TaskContext,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.inner.try_decode(buf, inputs, ctx, proto_converter)
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<()> {
        self.inner.try_encode(node, buf, proto_converter)
    }

    fn try_decode_udf(&self, name: &str, buf: &[u8]) -> Result<Arc<ScalarUDF>> {
        decode(name, buf)
    }

    fn try_encode_udf(&self, function: &ScalarUDF, buf: &mut Vec<u8>) -> Result<()> {
        encode(function, buf)
    }

    fn try_decode_udaf(&self, name: &str, buf: &[u8]) -> Result<Arc<AggregateUDF>> {
        decode_aggregate(name, || self.inner.try_decode_udaf(name, buf))
    }

    fn try_encode_udaf(&self, function: &AggregateUDF, buf: &mut Vec<u8>) -> Result<()> {
        self.inner.try_encode_udaf(function, buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each function comes back from its settings equal to itself (its settings included),
    /// and a function of DataFusion's travels by name alone.
    #[test]
    fn segflow_functions_travel_with_their_settings() {
        let oslo = chrono_tz::Europe::Oslo;
        let new_york = chrono_tz::America::New_York;
        let functions = [
            ScalarUDF::from(TextToInstant::new("ordered_at", oslo, new_york)),
            ScalarUDF::from(WallClockToInstant::new(new_york, oslo)),
            ScalarUDF::from(TextToDecimal::new("total_amount", 12, 2)),
        ];
        for function in functions {
            let mut buf = Vec::new();
            encode(&function, &mut buf).unwrap();
            let decoded = decode(function.name(), &buf).unwrap();
            assert_eq!(*decoded, function, "{}", String::from_utf8_lossy(&buf));
        }
        let mut buf = Vec::new();
        encode(
            &datafusion::functions::string::upper().as_ref().clone(),
            &mut buf,
        )
        .unwrap();
        assert!(buf.is_empty());
        let error = decode("text_to_decimal", br#"{"function": "text_to_decimal"}"#);
        assert!(
            error
                .unwrap_err()
                .to_string()
                .contains("same version of segflow"),
            "a message that says what to check"
        );
    }
}
