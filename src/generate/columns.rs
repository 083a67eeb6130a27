//! The columns of the four generated tables, built row by row.

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayBuilder, ArrayRef, BooleanBuilder, Decimal128Builder, Int32Builder, Int64Builder,
    ListBuilder, StringBuilder, TimestampMicrosecondBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;

fn timestamp_type() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

fn money_type() -> DataType {
    DataType::Decimal128(12, 2)
}

fn batch(fields: Vec<Field>, columns: Vec<ArrayRef>) -> RecordBatch {
    let schema: SchemaRef = Arc::new(Schema::new(fields));
    RecordBatch::try_new(schema, columns).expect("generated columns match their schema")
}

#[derive(Default)]
pub(super) struct CustomerColumns {
    pub(super) id: Int64Builder,
    pub(super) email: StringBuilder,
    pub(super) phone: StringBuilder,
    pub(super) created_at: TimestampMicrosecondBuilder,
    pub(super) country: StringBuilder,
    pub(super) email_subscribed: BooleanBuilder,
    pub(super) sms_subscribed: BooleanBuilder,
    pub(super) tags: ListBuilder<StringBuilder>,
    pub(super) updated_at: TimestampMicrosecondBuilder,
}

impl CustomerColumns {
    pub(super) fn finish(mut self) -> RecordBatch {
        batch(
            vec![
                Field::new("customer_id", DataType::Int64, false),
                Field::new("email", DataType::Utf8, false),
                Field::new("phone", DataType::Utf8, true),
                Field::new("created_at", timestamp_type(), false),
                Field::new("country", DataType::Utf8, false),
                Field::new("email_subscribed", DataType::Boolean, false),
                Field::new("sms_subscribed", DataType::Boolean, false),
                Field::new(
                    "tags",
                    DataType::List(Arc::new(Field::new("item", DataType::Utf8, true))),
                    false,
                ),
                Field::new("updated_at", timestamp_type(), false),
            ],
            vec![
                Arc::new(self.id.finish()),
                Arc::new(self.email.finish()),
                Arc::new(self.phone.finish()),
                Arc::new(self.created_at.finish().with_timezone("UTC")),
                Arc::new(self.country.finish()),
                Arc::new(self.email_subscribed.finish()),
                Arc::new(self.sms_subscribed.finish()),
                Arc::new(self.tags.finish()),
                Arc::new(self.updated_at.finish().with_timezone("UTC")),
            ],
        )
    }
}

#[derive(Default)]
pub(super) struct OrderColumns {
    pub(super) id: Int64Builder,
    pub(super) customer_id: Int64Builder,
    pub(super) ordered_at: TimestampMicrosecondBuilder,
    pub(super) total_amount: Decimal128Builder,
    pub(super) currency: StringBuilder,
    pub(super) status: StringBuilder,
    pub(super) refunded_amount: Decimal128Builder,
    pub(super) channel: StringBuilder,
    pub(super) updated_at: TimestampMicrosecondBuilder,
}

/// One row of the orders export.
pub(super) struct OrderRow<'a> {
    pub(super) id: i64,
    pub(super) customer_id: i64,
    pub(super) ordered_at: i64,
    pub(super) total_cents: i128,
    pub(super) status: &'a str,
    pub(super) refunded_cents: i128,
    pub(super) channel: &'a str,
    pub(super) updated_at: i64,
}

impl OrderColumns {
    pub(super) fn push(&mut self, row: &OrderRow<'_>) {
        self.id.append_value(row.id);
        self.customer_id.append_value(row.customer_id);
        self.ordered_at.append_value(row.ordered_at);
        self.total_amount.append_value(row.total_cents);
        self.currency.append_value("USD");
        self.status.append_value(row.status);
        self.refunded_amount.append_value(row.refunded_cents);
        self.channel.append_value(row.channel);
        self.updated_at.append_value(row.updated_at);
    }

    pub(super) fn is_empty(&self) -> bool {
        self.id.len() == 0
    }

    pub(super) fn finish(mut self) -> RecordBatch {
        let money = |b: &mut Decimal128Builder| {
            Arc::new(
                b.finish()
                    .with_precision_and_scale(12, 2)
                    .expect("decimal(12,2) is valid"),
            ) as ArrayRef
        };
        batch(
            vec![
                Field::new("order_id", DataType::Int64, false),
                Field::new("customer_id", DataType::Int64, false),
                Field::new("ordered_at", timestamp_type(), false),
                Field::new("total_amount", money_type(), false),
                Field::new("currency", DataType::Utf8, false),
                Field::new("status", DataType::Utf8, false),
                Field::new("refunded_amount", money_type(), false),
                Field::new("channel", DataType::Utf8, false),
                Field::new("updated_at", timestamp_type(), false),
            ],
            vec![
                Arc::new(self.id.finish()),
                Arc::new(self.customer_id.finish()),
                Arc::new(self.ordered_at.finish().with_timezone("UTC")),
                money(&mut self.total_amount),
                Arc::new(self.currency.finish()),
                Arc::new(self.status.finish()),
                money(&mut self.refunded_amount),
                Arc::new(self.channel.finish()),
                Arc::new(self.updated_at.finish().with_timezone("UTC")),
            ],
        )
    }
}

#[derive(Default)]
pub(super) struct ItemColumns {
    pub(super) order_id: Int64Builder,
    pub(super) product_id: Int64Builder,
    pub(super) collection: StringBuilder,
    pub(super) quantity: Int32Builder,
    pub(super) unit_price: Decimal128Builder,
}

impl ItemColumns {
    pub(super) fn finish(mut self) -> RecordBatch {
        batch(
            vec![
                Field::new("order_id", DataType::Int64, false),
                Field::new("product_id", DataType::Int64, false),
                Field::new("collection", DataType::Utf8, false),
                Field::new("quantity", DataType::Int32, false),
                Field::new("unit_price", money_type(), false),
            ],
            vec![
                Arc::new(self.order_id.finish()),
                Arc::new(self.product_id.finish()),
                Arc::new(self.collection.finish()),
                Arc::new(self.quantity.finish()),
                Arc::new(
                    self.unit_price
                        .finish()
                        .with_precision_and_scale(12, 2)
                        .expect("decimal(12,2) is valid"),
                ),
            ],
        )
    }
}

#[derive(Default)]
pub(super) struct CheckoutColumns {
    pub(super) id: Int64Builder,
    pub(super) customer_id: Int64Builder,
    pub(super) created_at: TimestampMicrosecondBuilder,
    pub(super) completed_at: TimestampMicrosecondBuilder,
}

impl CheckoutColumns {
    pub(super) fn finish(mut self) -> RecordBatch {
        batch(
            vec![
                Field::new("checkout_id", DataType::Int64, false),
                Field::new("customer_id", DataType::Int64, false),
                Field::new("created_at", timestamp_type(), false),
                Field::new("completed_at", timestamp_type(), true),
            ],
            vec![
                Arc::new(self.id.finish()),
                Arc::new(self.customer_id.finish()),
                Arc::new(self.created_at.finish().with_timezone("UTC")),
                Arc::new(self.completed_at.finish().with_timezone("UTC")),
            ],
        )
    }
}
