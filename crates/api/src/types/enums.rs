//! Istio's proto enums, deserialized by name with Kubernetes' wording for unknown values.

/// Declares a string-valued enum whose unknown values are refused with
/// `Unsupported value: "X": supported values: "A", "B"`, as the Kubernetes API server
/// words it. The first variant is the default (proto3's zero value). Variants may also
/// accept their proto number, since Istio's JSON decoding does.
macro_rules! string_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $text:literal $(| $alias:literal)* ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
        pub enum $name {
            #[default]
            $( $(#[$vmeta])* $variant ),+
        }

        impl $name {
            /// Every variant, in declaration (proto number) order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The name Istio's YAML uses for this value.
            pub const fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $( $text $(| $alias)* => Ok($name::$variant), )+
                    _ => {
                        if let Ok(n) = s.parse::<usize>() {
                            if let Some(v) = Self::ALL.get(n) {
                                return Ok(*v);
                            }
                        }
                        let supported: Vec<String> =
                            Self::ALL.iter().map(|v| format!("{:?}", v.as_str())).collect();
                        Err(format!(
                            "Unsupported value: {s:?}: supported values: {}",
                            supported.join(", ")
                        ))
                    }
                }
            }
        }

        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct Visit;
                impl ::serde::de::Visitor<'_> for Visit {
                    type Value = $name;
                    fn expecting(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                        f.write_str(concat!("a ", stringify!($name), " name"))
                    }
                    fn visit_str<E: ::serde::de::Error>(self, v: &str) -> Result<$name, E> {
                        v.parse().map_err(E::custom)
                    }
                    fn visit_u64<E: ::serde::de::Error>(self, v: u64) -> Result<$name, E> {
                        self.visit_str(&v.to_string())
                    }
                    fn visit_i64<E: ::serde::de::Error>(self, v: i64) -> Result<$name, E> {
                        self.visit_str(&v.to_string())
                    }
                }
                d.deserialize_any(Visit)
            }
        }
    };
}

pub(crate) use string_enum;

#[cfg(test)]
mod tests {
    string_enum! {
        /// A test enum.
        pub enum Mode {
            Unset = "UNSET",
            Strict = "STRICT",
        }
    }

    #[test]
    fn parses_names_numbers_and_refuses_unknown() {
        assert_eq!("STRICT".parse::<Mode>().unwrap(), Mode::Strict);
        assert_eq!("1".parse::<Mode>().unwrap(), Mode::Strict);
        let err = "BLAH".parse::<Mode>().unwrap_err();
        assert_eq!(
            err,
            r#"Unsupported value: "BLAH": supported values: "UNSET", "STRICT""#
        );
        let m: Mode = serde_json::from_str("\"UNSET\"").unwrap();
        assert_eq!(m, Mode::default());
    }
}
