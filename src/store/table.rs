//! One definition per table: [`table!`] declares a table's row type, and from the same list of
//! fields the column list of its reads (`COLUMNS`, the CSV header), the arrays its writes bind
//! (one per written column, for `unnest`) and the column and type lists of its INSERT text.
//! A column renamed or added in one place is renamed or added in all of them; the migration is
//! the other half, checked against `COLUMNS` by the tests (`tests/api/migrations.rs`).

/// Declares a row type read by name (`sqlx::FromRow`) and its `COLUMNS` (in the order of the
/// struct; the CSV header of exports), for `table!` and for reads of a part of a table, whose
/// select list is the struct's fields.
macro_rules! columns {
    (
        $(#[$meta:meta])*
        pub struct $row:ident {
            $( $(#[$field_meta:meta])* pub $column:ident : $ty:ty ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        pub struct $row {
            $( $(#[$field_meta])* pub $column: $ty, )+
        }

        impl $row {
            /// The columns read, in the order of the struct.
            pub const COLUMNS: &'static [&'static str] = &[$( stringify!($column) ),+];
        }
    };
}

/// Declares a row type and the column arrays that write it.
///
/// ```text
/// table! {
///     /// docs and derives of the row type
///     pub struct CdrRow {
///         pub id: i64,                                  // read only (the database assigns it)
///         pub session_id: String as &'a str = |cdr| &cdr.record.session_id,
///         …
///     }
///     written from Prepared<'a> as Arrays<'a> {
///         fingerprint as &'a [u8] = |event| …,   // written, never read back
///     }
/// }
/// ```
///
/// A field with `as ArrayElement = |source| value` is written: its value is taken from each
/// source row with the closure's body, in field order, and its SQL type is the one sqlx gives
/// the element. Fields without it are read only (set by the database). The `written … { }` list
/// holds columns that are written but not part of the row type (internal keys).
macro_rules! table {
    (
        $(#[$meta:meta])*
        pub struct $row:ident {
            $(
                $(#[$field_meta:meta])*
                pub $column:ident : $ty:ty
                    $( as $element:ty = |$source:ident| $value:expr )?
            ),+ $(,)?
        }
        written from $from:ty as $arrays:ident $(<$lt:lifetime>)? {
            $( $hidden:ident as $hidden_element:ty = |$hidden_source:ident| $hidden_value:expr ),*
            $(,)?
        }
    ) => {
        $crate::store::table::columns! {
            $(#[$meta])*
            pub struct $row {
                $( $(#[$field_meta])* pub $column: $ty ),+
            }
        }

        /// One array per written column, in the order of `written()`.
        struct $arrays $(<$lt>)? {
            $( $( $column: Vec<$element>, )? )+
            $( $hidden: Vec<$hidden_element>, )*
        }

        impl $(<$lt>)? $arrays $(<$lt>)? {
            /// The written columns with their arrays' SQL types (`TEXT[]`, as sqlx encodes
            /// them), in the order of the bound arrays.
            fn written() -> Vec<(&'static str, String)> {
                use sqlx::{Postgres, Type, TypeInfo as _};
                vec![
                    $( $( (
                        stringify!($column),
                        <Vec<$element> as Type<Postgres>>::type_info().name().to_owned(),
                    ), )? )+
                    $( (
                        stringify!($hidden),
                        <Vec<$hidden_element> as Type<Postgres>>::type_info().name().to_owned(),
                    ), )*
                ]
            }

            fn with_capacity(rows: usize) -> Self {
                Self {
                    $( $( $column: Vec::<$element>::with_capacity(rows), )? )+
                    $( $hidden: Vec::<$hidden_element>::with_capacity(rows), )*
                }
            }

            fn push(&mut self, from: &$from) {
                $( $( { let $source = from; self.$column.push($value); } )? )+
                $( { let $hidden_source = from; self.$hidden.push($hidden_value); } )*
            }

            /// The arrays as the statement's parameters, `$1` … in the order of `WRITTEN`.
            fn into_arguments(
                self,
            ) -> Result<sqlx::postgres::PgArguments, sqlx::error::BoxDynError> {
                use sqlx::Arguments as _;
                let mut arguments = sqlx::postgres::PgArguments::default();
                $( $( arguments.add::<Vec<$element>>(self.$column)?; )? )+
                $( arguments.add::<Vec<$hidden_element>>(self.$hidden)?; )*
                Ok(arguments)
            }
        }
    };
}

pub(super) use {columns, table};

/// `a, b, c`: the written columns' names.
pub(super) fn names(written: &[(&str, String)]) -> String {
    let names: Vec<&str> = written.iter().map(|(name, _)| *name).collect();
    names.join(", ")
}

/// `unnest($1::T1[], $2::T2[], …) as u(a, b, …)`: the bound arrays as rows, one per element.
pub(super) fn unnest(written: &[(&str, String)]) -> String {
    let arrays: Vec<String> = written
        .iter()
        .enumerate()
        .map(|(index, (_, sql_type))| format!("${}::{sql_type}", index + 1))
        .collect();
    format!("unnest({}) as u({})", arrays.join(", "), names(written))
}

/// Encoding failures of bound arrays are bugs of ours (every element type is one PostgreSQL
/// knows); they surface as `StoreError::Other`.
pub(super) fn encode_failed(error: sqlx::error::BoxDynError) -> super::StoreError {
    super::StoreError::Other(sqlx::Error::Encode(error))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unnest_numbers_the_arrays_in_order_and_names_the_rows() {
        let written = [
            ("session_id", "TEXT[]".to_owned()),
            ("at", "TIMESTAMPTZ[]".to_owned()),
        ];
        assert_eq!(names(&written), "session_id, at");
        assert_eq!(
            unnest(&written),
            "unnest($1::TEXT[], $2::TIMESTAMPTZ[]) as u(session_id, at)"
        );
    }
}
