//! segflow's own functions: column functions that read what exports write exactly
//! (timestamps as text or as wall-clock times of a zone, [`instants`]; decimals as text,
//! [`decimals`]), and the predictive models' fits and predictions ([`models`]). A column
//! function carries its settings (a column, zones, a scale); [`codec`] sends them along with
//! the function's name when a plan goes to a cluster, where the models' are built by name.
//!
//! What the column functions share: one argument in, a result of the same shape out, and a
//! value that does not parse reported as the file readers report theirs, so that a run goes
//! on to name the file that holds it.

#[cfg(feature = "cluster")]
mod codec;
mod decimals;
mod instants;
mod models;

#[cfg(feature = "cluster")]
pub use codec::{LogicalCodec, PhysicalCodec};
pub(crate) use decimals::text_to_decimal;
pub(crate) use instants::{in_zone, instant_type, text_to_instant};

/// Makes the functions that SQL calls by name known to `ctx`: the models', and
/// datafusion-functions-json's for JSON held as text (`json_get_str(col, 'a', 'b')`,
/// `col->>'a'`), with the rewrites that make `json_get(...)::int` one typed call.
pub fn register(ctx: &datafusion::prelude::SessionContext) {
    for function in models::scalar_functions() {
        ctx.register_udf(function);
    }
    for function in models::aggregate_functions() {
        ctx.register_udaf(function);
    }
    datafusion_functions_json::register_all(&mut *ctx.state_ref().write())
        .expect("the JSON functions register in a new session");
}

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::error::ArrowError;
use datafusion::common::{ScalarValue, exec_err};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs};

/// The one argument of the function `name`, and its values as an array.
fn argument<'a>(args: &'a ScalarFunctionArgs, name: &str) -> Result<(&'a ColumnarValue, ArrayRef)> {
    let [value] = args.args.as_slice() else {
        return exec_err!("{name} takes one argument");
    };
    Ok((value, value.to_array(args.number_rows)?))
}

/// Each text of a string array through `parse` (NULL stays NULL).
fn parse_texts<T>(
    array: &ArrayRef,
    mut parse: impl FnMut(&str) -> Result<Option<T>>,
) -> Result<Vec<Option<T>>> {
    array
        .as_string::<i32>()
        .iter()
        .map(|text| text.map_or(Ok(None), &mut parse))
        .collect()
}

/// `output` as a scalar or an array, as `input` was.
fn shaped_like(input: &ColumnarValue, output: impl Array + 'static) -> Result<ColumnarValue> {
    Ok(match input {
        ColumnarValue::Scalar(_) => ColumnarValue::Scalar(ScalarValue::try_from_array(&output, 0)?),
        ColumnarValue::Array(_) => ColumnarValue::Array(Arc::new(output)),
    })
}

/// A value that does not parse, as the CSV and JSON readers report theirs.
fn parse_error(message: String) -> DataFusionError {
    DataFusionError::ArrowError(Box::new(ArrowError::ParseError(message)), None)
}
