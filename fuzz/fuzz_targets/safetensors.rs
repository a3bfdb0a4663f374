//! The safetensors container: header length, JSON header, dtypes, shapes, offsets, and the
//! tensor reads that follow (f32 conversion of F32/F16/BF16, integer reads).
#![no_main]
use libfuzzer_sys::fuzz_target;
use webclip::model::SafeTensors;

fuzz_target!(|data: &[u8]| {
    let st = match SafeTensors::parse(data) {
        Ok(st) => st,
        Err(e) => return webclip_fuzz::check_error(&e),
    };
    // A header that parses describes a file at least `data_end` long: every tensor lies
    // inside it, so every read succeeds or refuses its dtype.
    assert!(st.data_end <= data.len());
    let names: Vec<String> = st.names().map(str::to_string).collect();
    for name in &names {
        let info = st.info(name).expect("listed tensor");
        assert!(info.start <= info.end && info.end <= data.len());
        match st.read_f32(data, name) {
            Ok(v) => assert_eq!(v.len(), info.numel()),
            Err(e) => webclip_fuzz::check_error(&e),
        }
        match st.read_i64(data, name) {
            Ok(v) => assert_eq!(v.len(), info.numel()),
            Err(e) => webclip_fuzz::check_error(&e),
        }
    }
    // The header alone (a range download reads it first) parses to the same tensors.
    let header_len = SafeTensors::header_len(data).expect("parsed above");
    let again = SafeTensors::parse_header(&data[..header_len]).expect("parsed above");
    assert_eq!(again.data_end, st.data_end);
    assert_eq!(again.names().count(), names.len());
});
