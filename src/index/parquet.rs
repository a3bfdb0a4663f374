//! The index as a Parquet file (`webclip index --parquet`, `webclip to-parquet`), for
//! data engines (DuckDB, Spark, Ray, LanceDB, pgvector loaders) to read as they are: one
//! row per entry with `id` (the entry's key), `path` and `content_hash` (from its
//! metadata, null when absent), `model_fingerprint`, and `embedding` (a list of floats,
//! L2-normalised). The file's key-value metadata says `format`, `dim` and `fingerprint`,
//! so shards made on several machines can be checked for one model before they are merged.

use super::file::IndexFile;
use crate::error::{ClipError, Result};
use parquet::basic::Compression;
use parquet::data_type::{ByteArray, ByteArrayType, FloatType};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;
use serde_json::Value;
use std::sync::Arc;

const SCHEMA: &str = "
message webclip_index {
  required binary id (STRING);
  optional binary path (STRING);
  optional binary content_hash (STRING);
  required binary model_fingerprint (STRING);
  required group embedding (LIST) {
    repeated group list {
      required float element;
    }
  }
}";

/// Rows per row group: a reader can skip or parallelise by group; 64k rows of 512 floats
/// are 128 MiB of embeddings.
const ROWS_PER_GROUP: usize = 65_536;

fn failed(e: parquet::errors::ParquetError) -> ClipError {
    ClipError::Internal(format!("writing the Parquet file failed: {e}"))
}

/// An entry's id as text: a string key as it is, any other JSON value as JSON.
fn id_of(key: &Value) -> String {
    match key {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The content hash of an entry: its metadata's `sha256` or `hash`, else its key when
/// that is one (`webclip index` keys entries by the SHA-256 of the file, in hex).
fn content_hash(key: &Value, metadata: &Value) -> Option<String> {
    for field in ["sha256", "hash"] {
        if let Some(Value::String(h)) = metadata.get(field) {
            return Some(h.clone());
        }
    }
    match key {
        Value::String(k) if k.len() == 64 && k.bytes().all(|b| b.is_ascii_hexdigit()) => {
            Some(k.to_ascii_lowercase())
        }
        _ => None,
    }
}

/// The Parquet bytes of `index`.
pub fn to_parquet(index: &IndexFile) -> Result<Vec<u8>> {
    let dim = index.dim;
    if dim == 0 || index.embeddings.len() != index.entries.len() * dim {
        return Err(ClipError::Internal(format!(
            "index: {} values for {} entries of {dim}",
            index.embeddings.len(),
            index.entries.len()
        )));
    }
    let fingerprint = index.fingerprint.clone().unwrap_or_default();
    let schema = Arc::new(parse_message_type(SCHEMA).map_err(failed)?);
    let props = WriterProperties::builder()
        .set_compression(Compression::UNCOMPRESSED)
        .set_key_value_metadata(Some(vec![
            KeyValue::new("format".into(), super::file::FORMAT.to_string()),
            KeyValue::new("dim".into(), dim.to_string()),
            KeyValue::new("fingerprint".into(), fingerprint.clone()),
        ]))
        .build();
    let mut out = Vec::new();
    let mut writer =
        SerializedFileWriter::new(&mut out, schema, Arc::new(props)).map_err(failed)?;
    for (group, values) in index
        .entries
        .chunks(ROWS_PER_GROUP)
        .zip(index.embeddings.chunks(ROWS_PER_GROUP * dim))
    {
        let mut rg = writer.next_row_group().map_err(failed)?;
        let mut column = 0;
        while let Some(mut col) = rg.next_column().map_err(failed)? {
            match column {
                // id, path, content_hash, model_fingerprint: text, the optional ones with
                // a definition level per row (0 = null).
                0..=3 => {
                    let text: Vec<Option<String>> = group
                        .iter()
                        .map(|e| match column {
                            0 => Some(id_of(&e.key)),
                            1 => e
                                .metadata
                                .get("path")
                                .and_then(Value::as_str)
                                .map(String::from),
                            2 => content_hash(&e.key, &e.metadata),
                            _ => Some(fingerprint.clone()),
                        })
                        .collect();
                    let values: Vec<ByteArray> = text
                        .iter()
                        .flatten()
                        .map(|s| ByteArray::from(s.as_bytes().to_vec()))
                        .collect();
                    let def: Vec<i16> = text.iter().map(|t| t.is_some() as i16).collect();
                    let optional = column == 1 || column == 2;
                    col.typed::<ByteArrayType>()
                        .write_batch(&values, optional.then_some(&def[..]), None)
                        .map_err(failed)?;
                }
                // embedding: every row a list of `dim` floats. A value's repetition level
                // is 0 where a row starts and 1 inside it; its definition level is 1 (the
                // list's repeated group is present).
                _ => {
                    let def = vec![1i16; values.len()];
                    let rep: Vec<i16> =
                        (0..values.len()).map(|i| i16::from(i % dim != 0)).collect();
                    col.typed::<FloatType>()
                        .write_batch(values, Some(&def), Some(&rep))
                        .map_err(failed)?;
                }
            }
            col.close().map_err(failed)?;
            column += 1;
        }
        rg.close().map_err(failed)?;
    }
    writer.close().map_err(failed)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::file::Entry;
    use parquet::file::reader::{FileReader, SerializedFileReader};
    use parquet::record::{Field, ListAccessor, RowAccessor};
    use serde_json::json;

    fn sample() -> IndexFile {
        let hash = "ab".repeat(32);
        IndexFile {
            fingerprint: Some("f00d".into()),
            dim: 3,
            entries: vec![
                Entry {
                    key: json!(hash),
                    metadata: json!({ "path": "trips/cat.jpg", "paths": ["trips/cat.jpg"] }),
                },
                Entry {
                    key: json!(7),
                    metadata: json!({ "sha256": "cd".repeat(32) }),
                },
                Entry {
                    key: json!("photo-3"),
                    metadata: json!(null),
                },
            ],
            embeddings: vec![0.6, 0.8, 0.0, 1.0, 0.0, 0.0, -0.0, 0.28, -0.96],
        }
    }

    #[test]
    fn a_parquet_reader_reads_back_every_row_with_nulls_where_metadata_lacks_a_field() {
        let index = sample();
        let bytes = to_parquet(&index).unwrap();
        assert_eq!(&bytes[..4], b"PAR1");
        let path =
            std::env::temp_dir().join(format!("webclip-parquet-{}.parquet", std::process::id()));
        std::fs::write(&path, &bytes).unwrap();
        let reader = SerializedFileReader::new(std::fs::File::open(&path).unwrap()).unwrap();
        std::fs::remove_file(&path).unwrap();
        let meta = reader.metadata().file_metadata();
        assert_eq!(meta.num_rows(), 3);
        let kv: Vec<(String, Option<String>)> = meta
            .key_value_metadata()
            .unwrap()
            .iter()
            .map(|k| (k.key.clone(), k.value.clone()))
            .collect();
        assert!(kv.contains(&("dim".into(), Some("3".into()))));
        assert!(kv.contains(&("fingerprint".into(), Some("f00d".into()))));
        let fields: Vec<String> = meta
            .schema_descr()
            .root_schema()
            .get_fields()
            .iter()
            .map(|f| f.name().to_string())
            .collect();
        assert_eq!(
            fields,
            [
                "id",
                "path",
                "content_hash",
                "model_fingerprint",
                "embedding"
            ]
        );

        let rows: Vec<_> = reader
            .get_row_iter(None)
            .unwrap()
            .map(|r| r.unwrap())
            .collect();
        let text = |r: &parquet::record::Row, i: usize| match r.get_column_iter().nth(i).unwrap().1
        {
            Field::Str(s) => Some(s.clone()),
            Field::Null => None,
            other => panic!("column {i}: {other:?}"),
        };
        let want = [
            (
                "ab".repeat(32),
                Some("trips/cat.jpg"),
                Some("ab".repeat(32)),
            ),
            ("7".into(), None, Some("cd".repeat(32))),
            ("photo-3".into(), None, None),
        ];
        for (row, (id, path, hash)) in rows.iter().zip(want) {
            assert_eq!(text(row, 0).as_deref(), Some(id.as_str()));
            assert_eq!(text(row, 1).as_deref(), path);
            assert_eq!(text(row, 2), hash);
            assert_eq!(row.get_string(3).unwrap(), "f00d");
        }
        for (i, row) in rows.iter().enumerate() {
            let list = row.get_list(4).unwrap();
            let got: Vec<f32> = (0..list.len())
                .map(|j| list.get_float(j).unwrap())
                .collect();
            assert_eq!(got, index.embeddings[i * 3..i * 3 + 3], "row {i}");
        }
    }

    #[test]
    fn an_inconsistent_index_is_an_error() {
        let mut index = sample();
        index.embeddings.pop();
        assert!(to_parquet(&index).is_err());
    }
}
