//! carbonapi's protobuf messages (go-graphite/protocol `carbonapi_v2_pb.proto` and
//! `carbonapi_v3_pb.proto`), written by hand with prost's derive so the build needs no
//! `protoc`. Field numbers and types follow the published `.proto` files exactly; only the
//! messages carbonserver sends or receives are here.

/// carbonapi_v2_pb.
pub mod v2 {
    /// `FetchResponse`: absent points are `0` with `isAbsent = true`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct FetchResponse {
        /// Metric name.
        #[prost(string, tag = "1")]
        pub name: String,
        /// First interval.
        #[prost(int32, tag = "2")]
        pub start_time: i32,
        /// End interval (exclusive).
        #[prost(int32, tag = "3")]
        pub stop_time: i32,
        /// Seconds per value.
        #[prost(int32, tag = "4")]
        pub step_time: i32,
        /// Values (0 where absent).
        #[prost(double, repeated, tag = "5")]
        pub values: Vec<f64>,
        /// Which values are gaps.
        #[prost(bool, repeated, tag = "6")]
        pub is_absent: Vec<bool>,
    }

    /// `MultiFetchResponse`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct MultiFetchResponse {
        /// One per series.
        #[prost(message, repeated, tag = "1")]
        pub metrics: Vec<FetchResponse>,
    }

    /// `GlobMatch`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct GlobMatch {
        /// Dotted path.
        #[prost(string, tag = "1")]
        pub path: String,
        /// Metric (true) or branch.
        #[prost(bool, tag = "2")]
        pub is_leaf: bool,
    }

    /// `GlobResponse`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct GlobResponse {
        /// The query.
        #[prost(string, tag = "1")]
        pub name: String,
        /// What it matched.
        #[prost(message, repeated, tag = "2")]
        pub matches: Vec<GlobMatch>,
    }

    /// `Retention`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Retention {
        /// Seconds per point.
        #[prost(int32, tag = "1")]
        pub seconds_per_point: i32,
        /// Points.
        #[prost(int32, tag = "2")]
        pub number_of_points: i32,
    }

    /// `InfoResponse`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct InfoResponse {
        /// Metric name.
        #[prost(string, tag = "1")]
        pub name: String,
        /// e.g. `Average`.
        #[prost(string, tag = "2")]
        pub aggregation_method: String,
        /// Longest retention, seconds.
        #[prost(int32, tag = "3")]
        pub max_retention: i32,
        /// xFilesFactor.
        #[prost(float, tag = "4")]
        pub x_files_factor: f32,
        /// Archives, highest precision first.
        #[prost(message, repeated, tag = "5")]
        pub retentions: Vec<Retention>,
    }
}

/// carbonapi_v3_pb.
pub mod v3 {
    /// `FilteringFunction` (parsed so requests carrying it decode; not applied).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct FilteringFunction {
        /// Function name.
        #[prost(string, tag = "1")]
        pub name: String,
        /// Arguments.
        #[prost(string, repeated, tag = "2")]
        pub arguments: Vec<String>,
    }

    /// `FetchRequest`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct FetchRequest {
        /// Glob or metric.
        #[prost(string, tag = "1")]
        pub name: String,
        /// From, Unix seconds.
        #[prost(int64, tag = "2")]
        pub start_time: i64,
        /// Until, Unix seconds.
        #[prost(int64, tag = "3")]
        pub stop_time: i64,
        /// Sub-second timestamps requested (not supported; ignored).
        #[prost(bool, tag = "4")]
        pub high_precision_timestamps: bool,
        /// The expression the caller is evaluating.
        #[prost(string, tag = "5")]
        pub path_expression: String,
        /// Functions the storage may apply (none are).
        #[prost(message, repeated, tag = "6")]
        pub filter_functions: Vec<FilteringFunction>,
    }

    /// `MultiFetchRequest`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct MultiFetchRequest {
        /// Requests.
        #[prost(message, repeated, tag = "1")]
        pub metrics: Vec<FetchRequest>,
    }

    /// `FetchResponse`: gaps are NaN.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct FetchResponse {
        /// Metric name.
        #[prost(string, tag = "1")]
        pub name: String,
        /// The request's glob.
        #[prost(string, tag = "2")]
        pub path_expression: String,
        /// Aggregation method name.
        #[prost(string, tag = "3")]
        pub consolidation_func: String,
        /// First interval.
        #[prost(int64, tag = "4")]
        pub start_time: i64,
        /// End interval (exclusive).
        #[prost(int64, tag = "5")]
        pub stop_time: i64,
        /// Seconds per value.
        #[prost(int64, tag = "6")]
        pub step_time: i64,
        /// xFilesFactor.
        #[prost(float, tag = "7")]
        pub x_files_factor: f32,
        /// Always false.
        #[prost(bool, tag = "8")]
        pub high_precision_timestamps: bool,
        /// Values, NaN for gaps.
        #[prost(double, repeated, tag = "9")]
        pub values: Vec<f64>,
        /// Always empty.
        #[prost(string, repeated, tag = "10")]
        pub applied_functions: Vec<String>,
        /// `from` as requested.
        #[prost(int64, tag = "11")]
        pub request_start_time: i64,
        /// `until` as requested.
        #[prost(int64, tag = "12")]
        pub request_stop_time: i64,
    }

    /// `MultiFetchResponse`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct MultiFetchResponse {
        /// One per series.
        #[prost(message, repeated, tag = "1")]
        pub metrics: Vec<FetchResponse>,
    }

    /// `MultiGlobRequest`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct MultiGlobRequest {
        /// Globs.
        #[prost(string, repeated, tag = "1")]
        pub metrics: Vec<String>,
        /// From (unused by find).
        #[prost(int64, tag = "2")]
        pub start_time: i64,
        /// Until (unused by find).
        #[prost(int64, tag = "3")]
        pub stop_time: i64,
        /// Unused.
        #[prost(bool, tag = "4")]
        pub high_precision_timestamps: bool,
    }

    /// `GlobMatch`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct GlobMatch {
        /// Dotted path.
        #[prost(string, tag = "1")]
        pub path: String,
        /// Metric (true) or branch.
        #[prost(bool, tag = "2")]
        pub is_leaf: bool,
    }

    /// `GlobResponse`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct GlobResponse {
        /// The query.
        #[prost(string, tag = "1")]
        pub name: String,
        /// What it matched.
        #[prost(message, repeated, tag = "2")]
        pub matches: Vec<GlobMatch>,
    }

    /// `MultiGlobResponse`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct MultiGlobResponse {
        /// One per query.
        #[prost(message, repeated, tag = "1")]
        pub metrics: Vec<GlobResponse>,
    }

    /// `Retention`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Retention {
        /// Seconds per point.
        #[prost(int64, tag = "1")]
        pub seconds_per_point: i64,
        /// Points.
        #[prost(int64, tag = "2")]
        pub number_of_points: i64,
    }

    /// `MetricsInfoResponse` (field 4 before 3, as in the .proto).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct MetricsInfoResponse {
        /// Metric name.
        #[prost(string, tag = "1")]
        pub name: String,
        /// e.g. `Average`.
        #[prost(string, tag = "2")]
        pub consolidation_func: String,
        /// xFilesFactor.
        #[prost(float, tag = "4")]
        pub x_files_factor: f32,
        /// Longest retention, seconds.
        #[prost(int64, tag = "3")]
        pub max_retention: i64,
        /// Archives, highest precision first.
        #[prost(message, repeated, tag = "5")]
        pub retentions: Vec<Retention>,
    }

    /// `MultiMetricsInfoResponse`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct MultiMetricsInfoResponse {
        /// One per metric.
        #[prost(message, repeated, tag = "1")]
        pub metrics: Vec<MetricsInfoResponse>,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    /// Golden bytes worked out by hand from the protobuf wire format, so a wrong tag or
    /// type in the derive attributes is caught without a protoc at hand.
    #[test]
    fn v2_fetch_response_wire_bytes() {
        let m = v2::FetchResponse {
            name: "a".into(),
            start_time: 1,
            stop_time: 3,
            step_time: 1,
            values: vec![1.0, 0.0],
            is_absent: vec![false, true],
        };
        let mut want = vec![0x0a, 1, b'a', 0x10, 1, 0x18, 3, 0x20, 1, 0x2a, 16];
        want.extend_from_slice(&1.0f64.to_le_bytes());
        want.extend_from_slice(&0.0f64.to_le_bytes());
        want.extend_from_slice(&[0x32, 2, 0, 1]);
        assert_eq!(m.encode_to_vec(), want);
    }

    #[test]
    fn v3_glob_request_decodes() {
        // metrics: ["a.*", "b"], startTime 5
        let bytes = [0x0a, 3, b'a', b'.', b'*', 0x0a, 1, b'b', 0x10, 5];
        let r = v3::MultiGlobRequest::decode(&bytes[..]).unwrap();
        assert_eq!(r.metrics, ["a.*", "b"]);
        assert_eq!(r.start_time, 5);
        assert!(v3::MultiGlobRequest::decode(&[0x0a, 9, b'a'][..]).is_err());
    }
}
