//! The models of [`crate::models`] as SQL functions, so that a fit and its predictions are
//! steps like any other (docs/shipped-pipeline.md, "Predictions"):
//!
//! - `bgnbd_fit(x, t_x, T)` and `gamma_gamma_fit(x, mean_value)` are aggregates: over the
//!   customers' rows they return one struct, the fitted parameters with `log_likelihood`,
//!   `customers` and `iterations`. Their state is the distinct histories with a count, so a
//!   fit over a million customers moves a few hundred thousand rows between partitions (or
//!   executors), and the fit itself runs once, on the merged state.
//! - `bgnbd_p_alive(fit, x, t_x, T)`, `bgnbd_expected_purchases(fit, t, x, t_x, T)`,
//!   `bgnbd_discounted_purchases(fit, months, periods_per_month, monthly_discount, x, t_x, T)`
//!   and `bgnbd_time_to_purchases(fit, purchases, horizon, x, t_x, T)` predict per row from
//!   a `bgnbd_fit` struct. A NULL argument gives NULL.
//!
//! They carry no settings, so a cluster builds them from their names alone.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, Float64Array, Int64Array, ListArray, StructArray,
};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Fields, Float64Type};
use datafusion::common::{ScalarValue, exec_datafusion_err, exec_err, plan_err};
use datafusion::error::Result;
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{
    Accumulator, AggregateUDF, AggregateUDFImpl, ColumnarValue, ScalarFunctionArgs, ScalarUDF,
    ScalarUDFImpl, Signature, Volatility,
};

use crate::models::{BgNbd, FitError, Fitted, GammaGamma, History, Spend};

/// Every scalar function of this module.
pub(super) fn scalar_functions() -> Vec<ScalarUDF> {
    Prediction::ALL
        .map(|p| ScalarUDF::from(BgNbdPrediction::new(p)))
        .into()
}

/// Every aggregate function of this module.
pub(super) fn aggregate_functions() -> Vec<AggregateUDF> {
    vec![
        AggregateUDF::from(ModelFit::new(Model::BgNbd)),
        AggregateUDF::from(ModelFit::new(Model::GammaGamma)),
    ]
}

/// The scalar function called `name`, if it is one of these: how a cluster's processes build
/// them from a plan.
#[cfg(feature = "cluster")]
pub(super) fn scalar_named(name: &str) -> Option<ScalarUDF> {
    Prediction::ALL
        .into_iter()
        .find(|p| p.name() == name)
        .map(|p| ScalarUDF::from(BgNbdPrediction::new(p)))
}

/// The aggregate function called `name`, if it is one of these.
#[cfg(feature = "cluster")]
pub(super) fn aggregate_named(name: &str) -> Option<AggregateUDF> {
    [Model::BgNbd, Model::GammaGamma]
        .into_iter()
        .find(|m| m.function() == name)
        .map(|m| AggregateUDF::from(ModelFit::new(m)))
}

fn fit_error(error: FitError) -> datafusion::error::DataFusionError {
    exec_datafusion_err!("{error}")
}

/// Float64 for every numeric type (decimals, integers), or why not.
fn as_number(function: &str, position: usize, data_type: &DataType) -> Result<DataType> {
    if data_type.is_numeric() || data_type.is_null() {
        Ok(DataType::Float64)
    } else {
        plan_err!("{function}: argument {position} is {data_type}, not a number")
    }
}

/// `array` as float64 values.
fn floats(array: &ArrayRef) -> Result<Float64Array> {
    Ok(cast(array, &DataType::Float64)?
        .as_primitive::<Float64Type>()
        .clone())
}

/// The most inputs a model's row has (BG/NBD's x, t_x, T).
const MAX_INPUTS: usize = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Model {
    BgNbd,
    GammaGamma,
}

impl Model {
    fn function(self) -> &'static str {
        match self {
            Model::BgNbd => "bgnbd_fit",
            Model::GammaGamma => "gamma_gamma_fit",
        }
    }

    /// The inputs of a customer's row, as the SQL passes them.
    fn inputs(self) -> &'static [&'static str] {
        match self {
            Model::BgNbd => &["x", "t_x", "T"],
            Model::GammaGamma => &["x", "mean_value"],
        }
    }

    fn parameters(self) -> &'static [&'static str] {
        match self {
            Model::BgNbd => &["r", "alpha", "a", "b"],
            Model::GammaGamma => &["p", "q", "gamma"],
        }
    }

    fn result_fields(self) -> Fields {
        let mut fields: Vec<Field> = self
            .parameters()
            .iter()
            .map(|name| Field::new(*name, DataType::Float64, false))
            .collect();
        fields.push(Field::new("log_likelihood", DataType::Float64, false));
        fields.push(Field::new("customers", DataType::Int64, false));
        fields.push(Field::new("iterations", DataType::Int64, false));
        Fields::from(fields)
    }

    /// Whether a row counts: BG/NBD takes every customer with a history; Gamma-Gamma only
    /// repeat buyers, whose repeat orders say what they spend.
    fn takes(self, values: &[f64]) -> bool {
        match self {
            Model::BgNbd => true,
            Model::GammaGamma => values[0] > 0.0,
        }
    }

    /// Fits the model to the distinct inputs with their counts; the parameters come in
    /// [`Model::parameters`] order.
    fn fit(self, rows: &[(Vec<f64>, f64)]) -> Result<Fitted<Vec<f64>>, FitError> {
        match self {
            Model::BgNbd => {
                let histories: Vec<History> = rows
                    .iter()
                    .map(|(v, customers)| History {
                        x: v[0],
                        t_x: v[1],
                        observed: v[2],
                        customers: *customers,
                    })
                    .collect();
                Ok(BgNbd::fit(&histories)?.map(|m| vec![m.r, m.alpha, m.a, m.b]))
            }
            Model::GammaGamma => {
                let spends: Vec<Spend> = rows
                    .iter()
                    .map(|(v, customers)| Spend {
                        x: v[0],
                        mean_value: v[1],
                        customers: *customers,
                    })
                    .collect();
                Ok(GammaGamma::fit(&spends)?.map(|m| vec![m.p, m.q, m.gamma]))
            }
        }
    }
}

/// `bgnbd_fit` and `gamma_gamma_fit`.
#[derive(Debug, PartialEq, Eq, Hash)]
struct ModelFit {
    model: Model,
    signature: Signature,
}

impl ModelFit {
    fn new(model: Model) -> ModelFit {
        ModelFit {
            model,
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

impl AggregateUDFImpl for ModelFit {
    fn name(&self) -> &str {
        self.model.function()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        let inputs = self.model.inputs();
        if arg_types.len() != inputs.len() {
            return plan_err!(
                "{}({}) takes {} arguments",
                self.name(),
                inputs.join(", "),
                inputs.len()
            );
        }
        arg_types
            .iter()
            .enumerate()
            .map(|(i, t)| as_number(self.name(), i + 1, t))
            .collect()
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Struct(self.model.result_fields()))
    }

    fn accumulator(&self, _args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        Ok(Box::new(Histories {
            model: self.model,
            counts: HashMap::new(),
        }))
    }

    /// One list per input, and one of the counts.
    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        let list = |name: String| {
            Arc::new(Field::new_list(
                name,
                Field::new_list_field(DataType::Float64, true),
                true,
            ))
        };
        let mut fields: Vec<FieldRef> = self
            .model
            .inputs()
            .iter()
            .map(|input| list(format!("{}[{input}]", args.name)))
            .collect();
        fields.push(list(format!("{}[customers]", args.name)));
        Ok(fields)
    }
}

/// The distinct input rows seen so far, each with how many customers had it.
#[derive(Debug)]
struct Histories {
    model: Model,
    /// Keyed by the inputs' bits, the unused places 0 (Gamma-Gamma has two inputs).
    counts: HashMap<[u64; MAX_INPUTS], f64>,
}

impl Histories {
    fn add(&mut self, values: &[f64], customers: f64) {
        if self.model.takes(values) {
            // -0.0 and 0.0 are one history.
            let mut key = [0; MAX_INPUTS];
            for (bits, value) in key.iter_mut().zip(values) {
                *bits = (value + 0.0).to_bits();
            }
            *self.counts.entry(key).or_insert(0.0) += customers;
        }
    }

    /// The rows of `columns` (nulls skipped), each counted `customers` times.
    fn add_columns(&mut self, columns: &[Float64Array], customers: Option<&Float64Array>) {
        let rows = columns.first().map_or(0, Array::len);
        let mut values = vec![0.0; columns.len()];
        'rows: for row in 0..rows {
            for (value, column) in values.iter_mut().zip(columns) {
                if column.is_null(row) {
                    continue 'rows;
                }
                *value = column.value(row);
            }
            self.add(&values, customers.map_or(1.0, |c| c.value(row)));
        }
    }
}

impl Accumulator for Histories {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let columns = values.iter().map(floats).collect::<Result<Vec<_>>>()?;
        self.add_columns(&columns, None);
        Ok(())
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let lists: Vec<&ListArray> = states.iter().map(|s| s.as_list::<i32>()).collect();
        let Some((counts, inputs)) = lists.split_last() else {
            return exec_err!("{} received no state", self.model.function());
        };
        for row in 0..counts.len() {
            if counts.is_null(row) {
                continue;
            }
            let columns = inputs
                .iter()
                .map(|list| floats(&list.value(row)))
                .collect::<Result<Vec<_>>>()?;
            let customers = floats(&counts.value(row))?;
            self.add_columns(&columns, Some(&customers));
        }
        Ok(())
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let width = self.model.inputs().len();
        let mut columns: Vec<Vec<f64>> = vec![Vec::with_capacity(self.counts.len()); width + 1];
        for (key, customers) in &self.counts {
            for (column, bits) in columns.iter_mut().zip(&key[..width]) {
                column.push(f64::from_bits(*bits));
            }
            columns[width].push(*customers);
        }
        Ok(columns
            .into_iter()
            .map(|values| {
                let length = values.len();
                let list = ListArray::new(
                    Arc::new(Field::new_list_field(DataType::Float64, true)),
                    OffsetBuffer::from_lengths([length]),
                    Arc::new(Float64Array::from(values)),
                    None,
                );
                ScalarValue::List(Arc::new(list))
            })
            .collect())
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        // In one order whatever order the partitions arrived in: the same data, the same fit,
        // to the last bit.
        let width = self.model.inputs().len();
        let mut rows: Vec<(Vec<f64>, f64)> = self
            .counts
            .iter()
            .map(|(key, customers)| {
                let values = key[..width].iter().map(|b| f64::from_bits(*b)).collect();
                (values, *customers)
            })
            .collect();
        rows.sort_by(|a, b| {
            a.0.iter()
                .zip(&b.0)
                .map(|(x, y)| x.total_cmp(y))
                .find(|o| o.is_ne())
                .unwrap_or(std::cmp::Ordering::Equal)
        });
        let fitted = self.model.fit(&rows).map_err(fit_error)?;
        let mut columns: Vec<ArrayRef> = fitted
            .model
            .iter()
            .map(|v| Arc::new(Float64Array::from(vec![*v])) as ArrayRef)
            .collect();
        columns.push(Arc::new(Float64Array::from(vec![fitted.log_likelihood])));
        columns.push(Arc::new(Int64Array::from(vec![
            fitted.customers.round() as i64
        ])));
        columns.push(Arc::new(Int64Array::from(vec![fitted.iterations as i64])));
        let result = StructArray::try_new(self.model.result_fields(), columns, None)?;
        Ok(ScalarValue::Struct(Arc::new(result)))
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self)
            + self.counts.capacity() * (std::mem::size_of::<([u64; MAX_INPUTS], f64)>() + 8)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Prediction {
    PAlive,
    ExpectedPurchases,
    DiscountedPurchases,
    TimeToPurchases,
}

impl Prediction {
    const ALL: [Prediction; 4] = [
        Prediction::PAlive,
        Prediction::ExpectedPurchases,
        Prediction::DiscountedPurchases,
        Prediction::TimeToPurchases,
    ];

    fn name(self) -> &'static str {
        match self {
            Prediction::PAlive => "bgnbd_p_alive",
            Prediction::ExpectedPurchases => "bgnbd_expected_purchases",
            Prediction::DiscountedPurchases => "bgnbd_discounted_purchases",
            Prediction::TimeToPurchases => "bgnbd_time_to_purchases",
        }
    }

    /// The arguments after `fit`; every call ends with the customer's x, t_x, T.
    fn arguments(self) -> &'static [&'static str] {
        match self {
            Prediction::PAlive => &["x", "t_x", "T"],
            Prediction::ExpectedPurchases => &["t", "x", "t_x", "T"],
            Prediction::DiscountedPurchases => &[
                "months",
                "periods_per_month",
                "monthly_discount",
                "x",
                "t_x",
                "T",
            ],
            Prediction::TimeToPurchases => &["purchases", "horizon", "x", "t_x", "T"],
        }
    }

    /// The prediction for one row of arguments (after `fit`).
    fn compute(self, model: &BgNbd, values: &[f64]) -> Result<Option<f64>, FitError> {
        let n = values.len();
        let (x, t_x, observed) = (values[n - 3], values[n - 2], values[n - 1]);
        if !(x >= 0.0 && t_x >= 0.0 && t_x <= observed && observed.is_finite()) {
            return Err(FitError::Prediction {
                model: crate::models::bgnbd::MODEL,
                problem: format!(
                    "{}: x = {x}, t_x = {t_x}, T = {observed} breaks 0 ≤ x and 0 ≤ t_x ≤ T",
                    self.name()
                ),
            });
        }
        match self {
            Prediction::PAlive => Ok(Some(model.p_alive(x, t_x, observed))),
            Prediction::ExpectedPurchases => model
                .expected_purchases(values[0], x, t_x, observed)
                .map(Some),
            Prediction::DiscountedPurchases => {
                let months = values[0];
                if !(months >= 0.0 && months.fract() == 0.0 && months <= 1200.0) {
                    return Err(FitError::Prediction {
                        model: crate::models::bgnbd::MODEL,
                        problem: format!(
                            "{}: months = {months} is not a whole number of months up to 1200",
                            self.name()
                        ),
                    });
                }
                model
                    .discounted_purchases(months as u32, values[1], values[2], x, t_x, observed)
                    .map(Some)
            }
            Prediction::TimeToPurchases => {
                model.time_to_purchases(values[0], values[1], x, t_x, observed)
            }
        }
    }
}

/// The BG/NBD predictions.
#[derive(Debug, PartialEq, Eq, Hash)]
struct BgNbdPrediction {
    prediction: Prediction,
    signature: Signature,
}

impl BgNbdPrediction {
    fn new(prediction: Prediction) -> BgNbdPrediction {
        BgNbdPrediction {
            prediction,
            signature: Signature::user_defined(Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for BgNbdPrediction {
    fn name(&self) -> &str {
        self.prediction.name()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        let arguments = self.prediction.arguments();
        let usage = format!("{}(fit, {})", self.name(), arguments.join(", "));
        let Some((fit, rest)) = arg_types.split_first() else {
            return plan_err!("{usage} takes {} arguments", arguments.len() + 1);
        };
        if rest.len() != arguments.len() {
            return plan_err!("{usage} takes {} arguments", arguments.len() + 1);
        }
        let has_parameters = match fit {
            DataType::Struct(fields) => Model::BgNbd.parameters().iter().all(|p| {
                fields
                    .iter()
                    .any(|f| f.name() == p && f.data_type().is_numeric())
            }),
            _ => false,
        };
        if !has_parameters {
            return plan_err!(
                "{usage}: fit is {fit}, not the result of bgnbd_fit (a struct with the numbers {})",
                Model::BgNbd.parameters().join(", ")
            );
        }
        let mut types = vec![fit.clone()];
        for (i, t) in rest.iter().enumerate() {
            types.push(as_number(self.name(), i + 2, t)?);
        }
        Ok(types)
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Float64)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let arrays = args
            .args
            .iter()
            .map(|a| a.to_array(rows))
            .collect::<Result<Vec<_>>>()?;
        let fit = arrays[0].as_struct();
        let parameters = Model::BgNbd
            .parameters()
            .iter()
            .map(|p| floats(fit.column_by_name(p).expect("checked in coerce_types")))
            .collect::<Result<Vec<_>>>()?;
        let values = arrays[1..].iter().map(floats).collect::<Result<Vec<_>>>()?;
        let mut row_values = vec![0.0; values.len()];
        let mut result = Vec::with_capacity(rows);
        for row in 0..rows {
            let missing = fit.is_null(row)
                || parameters
                    .iter()
                    .chain(&values)
                    .any(|column| column.is_null(row));
            if missing {
                result.push(None);
                continue;
            }
            let model = BgNbd {
                r: parameters[0].value(row),
                alpha: parameters[1].value(row),
                a: parameters[2].value(row),
                b: parameters[3].value(row),
            };
            for (value, column) in row_values.iter_mut().zip(&values) {
                *value = column.value(row);
            }
            result.push(
                self.prediction
                    .compute(&model, &row_values)
                    .map_err(fit_error)?,
            );
        }
        Ok(ColumnarValue::Array(Arc::new(Float64Array::from(result))))
    }
}
