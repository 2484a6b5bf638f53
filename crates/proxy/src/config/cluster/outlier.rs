//! A cluster's passive health checking (`outlier_detection`, Istio's DestinationRule
//! `outlierDetection`): which run of failures ejects an endpoint, and for how long.

use std::time::Duration;

use mizzen_xds::pb::envoy::config::cluster::v3::OutlierDetection as PbOutlierDetection;
use mizzen_xds::pb::google::protobuf::UInt32Value;

use crate::config::duration;

/// Outlier detection settings, Envoy's defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutlierDetection {
    /// Consecutive 5xx (and, unless split, local failures) that eject an endpoint.
    pub consecutive_5xx: u32,
    /// Consecutive 502, 503 and 504 (and, unless split, local failures) that eject.
    pub consecutive_gateway_failure: u32,
    /// Consecutive local failures (connect failures, resets, timeouts) that eject,
    /// when split from the upstream's own answers.
    pub consecutive_local_origin_failure: u32,
    /// Whether local failures count apart from the upstream's 5xx.
    pub split_external_local_origin_errors: bool,
    /// Chance in percent that a detected run of 5xx ejects.
    pub enforcing_consecutive_5xx: u32,
    /// Chance in percent that a detected run of gateway failures ejects.
    pub enforcing_consecutive_gateway_failure: u32,
    /// Chance in percent that a detected run of local failures ejects.
    pub enforcing_consecutive_local_origin_failure: u32,
    /// Time between sweeps that bring ejected endpoints back.
    pub interval: Duration,
    /// How long a first ejection lasts; the n-th lasts n times as long.
    pub base_ejection_time: Duration,
    /// The longest an ejection lasts.
    pub max_ejection_time: Duration,
    /// The share of the cluster's endpoints, in percent, that may be ejected at once.
    pub max_ejection_percent: u32,
    /// Whether one endpoint may be ejected whatever `max_ejection_percent` says.
    pub always_eject_one_host: bool,
}

impl OutlierDetection {
    /// The settings of `raw`, refusing out-of-range values with the field at fault.
    pub fn compile(raw: &PbOutlierDetection) -> Result<OutlierDetection, (String, String)> {
        let count = |v: Option<UInt32Value>, default: u32| v.map_or(default, |v| v.value);
        let percent = |field: &str, v: Option<UInt32Value>, default: u32| match v {
            Some(v) if v.value > 100 => Err((
                field.to_owned(),
                format!("{} is not a percentage between 0 and 100", v.value),
            )),
            v => Ok(count(v, default)),
        };
        let time =
            |field: &str, v: Option<&mizzen_xds::pb::google::protobuf::Duration>, default| {
                v.map_or(Ok(default), |d| {
                    duration(d).map_err(|reason| (field.to_owned(), reason))
                })
            };
        let base_ejection_time = time(
            "base_ejection_time",
            raw.base_ejection_time.as_ref(),
            Duration::from_secs(30),
        )?;
        let interval = time("interval", raw.interval.as_ref(), Duration::from_secs(10))?;
        if interval.is_zero() {
            return Err(("interval".into(), "must be greater than 0".into()));
        }
        // Envoy: the default (300 s) or the base ejection time, whichever is longer.
        let max_ejection_time = time(
            "max_ejection_time",
            raw.max_ejection_time.as_ref(),
            Duration::from_secs(300),
        )?
        .max(base_ejection_time);
        Ok(OutlierDetection {
            consecutive_5xx: count(raw.consecutive_5xx, 5),
            consecutive_gateway_failure: count(raw.consecutive_gateway_failure, 5),
            consecutive_local_origin_failure: count(raw.consecutive_local_origin_failure, 5),
            split_external_local_origin_errors: raw.split_external_local_origin_errors,
            enforcing_consecutive_5xx: percent(
                "enforcing_consecutive_5xx",
                raw.enforcing_consecutive_5xx,
                100,
            )?,
            enforcing_consecutive_gateway_failure: percent(
                "enforcing_consecutive_gateway_failure",
                raw.enforcing_consecutive_gateway_failure,
                0,
            )?,
            enforcing_consecutive_local_origin_failure: percent(
                "enforcing_consecutive_local_origin_failure",
                raw.enforcing_consecutive_local_origin_failure,
                100,
            )?,
            interval,
            base_ejection_time,
            max_ejection_time,
            max_ejection_percent: percent("max_ejection_percent", raw.max_ejection_percent, 10)?,
            always_eject_one_host: raw.always_eject_one_host.is_some_and(|b| b.value),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mizzen_xds::pb::google::protobuf::Duration as PbDuration;

    #[test]
    fn envoy_defaults_fill_what_istio_leaves_unset() {
        let raw = PbOutlierDetection {
            consecutive_5xx: Some(UInt32Value { value: 3 }),
            base_ejection_time: Some(PbDuration {
                seconds: 600,
                nanos: 0,
            }),
            ..Default::default()
        };
        let od = OutlierDetection::compile(&raw).unwrap();
        assert_eq!(od.consecutive_5xx, 3);
        assert_eq!(od.consecutive_gateway_failure, 5);
        assert_eq!(od.enforcing_consecutive_5xx, 100);
        assert_eq!(od.enforcing_consecutive_gateway_failure, 0);
        assert_eq!(od.interval, Duration::from_secs(10));
        assert_eq!(od.max_ejection_percent, 10);
        assert_eq!(
            od.max_ejection_time,
            Duration::from_secs(600),
            "never shorter than the base ejection time"
        );
    }

    #[test]
    fn a_percentage_above_100_is_refused_by_field() {
        let raw = PbOutlierDetection {
            max_ejection_percent: Some(UInt32Value { value: 101 }),
            ..Default::default()
        };
        let (field, reason) = OutlierDetection::compile(&raw).unwrap_err();
        assert_eq!(field, "max_ejection_percent");
        assert!(reason.contains("101"), "{reason}");
    }
}
