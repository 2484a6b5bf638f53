//! Bookinfo's reviews service: two reviews of a product; v2 and v3 add each reviewer's
//! stars from ratings (black in v2, red in v3), v1 has none.

use std::time::Duration;

use http::StatusCode;
use serde_json::json;

use super::outbound::{Outbound, PROPAGATED, Upstream, propagated};
use super::server::{Reply, Request};

/// The reviews every product gets, by reviewer.
const REVIEWS: [(&str, &str); 2] = [
    (
        "Reviewer1",
        "An extremely entertaining play by Shakespeare. The slapstick humour is refreshing!",
    ),
    (
        "Reviewer2",
        "Absolutely fun and entertaining. The play lacks thematic depth when compared to other plays by Shakespeare.",
    ),
];

/// The colour of a version's stars.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stars {
    /// v2.
    Black,
    /// v3.
    Red,
}

impl Stars {
    /// The stars `version` shows: none for v1, black for v2, red for v3.
    pub fn of_version(version: &str) -> anyhow::Result<Option<Stars>> {
        match version {
            "v1" => Ok(None),
            "v2" => Ok(Some(Stars::Black)),
            "v3" => Ok(Some(Stars::Red)),
            other => anyhow::bail!("reviews has versions v1, v2 and v3, not {other:?}"),
        }
    }

    fn color(self) -> &'static str {
        match self {
            Stars::Black => "black",
            Stars::Red => "red",
        }
    }

    /// How long a call to ratings may take: Istio's v3 gives up sooner, which its fault
    /// injection task relies on.
    fn timeout(self) -> Duration {
        match self {
            Stars::Black => Duration::from_secs(10),
            Stars::Red => Duration::from_millis(2500),
        }
    }
}

/// Where a version with stars gets them.
#[derive(Debug)]
pub struct Ratings {
    /// The stars' colour.
    pub stars: Stars,
    /// How to reach ratings.
    pub outbound: Outbound,
    /// The ratings service.
    pub upstream: Upstream,
}

/// A reviews replica.
#[derive(Debug)]
pub struct Reviews {
    /// The pod name it reports (`podname`), so callers see which replica answered.
    pub pod_name: String,
    /// The cluster name it reports (`clustername`); Istio's says `null` when unset.
    pub cluster_name: String,
    /// `None` for v1.
    pub ratings: Option<Ratings>,
}

impl Reviews {
    /// Answers `/health` and `/reviews/<id>`.
    pub async fn handle(&self, request: &Request) -> Reply {
        let path = request.path();
        if path == "/health" {
            return Reply::json(StatusCode::OK, &json!({"status": "Reviews is healthy"}));
        }
        let Some(id) = path.strip_prefix("/reviews/") else {
            return Reply::not_found(path);
        };
        // Istio's takes an int path parameter, which JAX-RS answers 404 when it is not.
        let Ok(id) = id.parse::<i64>() else {
            return Reply::json(
                StatusCode::NOT_FOUND,
                &json!({"error": "please provide numeric product id"}),
            );
        };
        let stars = match &self.ratings {
            Some(ratings) => Some(self.stars(ratings, id, request).await),
            None => None,
        };
        let reviews: Vec<_> = REVIEWS
            .iter()
            .map(|(reviewer, text)| {
                let mut review = json!({"reviewer": reviewer, "text": text});
                if let Some((color, given)) = &stars {
                    review["rating"] = match given.as_ref().and_then(|g| g[reviewer].as_i64()) {
                        Some(n) => json!({"stars": n, "color": color}),
                        None => json!({"error": "Ratings service is currently unavailable"}),
                    };
                }
                review
            })
            .collect();
        Reply::json(
            StatusCode::OK,
            &json!({
                "id": id.to_string(),
                "podname": self.pod_name,
                "clustername": self.cluster_name,
                "reviews": reviews,
            }),
        )
    }

    /// The colour and the `ratings` object from the ratings service, `None` when it
    /// could not be had.
    async fn stars(
        &self,
        ratings: &Ratings,
        id: i64,
        request: &Request,
    ) -> (&'static str, Option<serde_json::Value>) {
        // The user too, so the mesh can route ratings by it as it routed reviews.
        let names = PROPAGATED.iter().copied().chain(["end-user"]);
        let headers = propagated(&request.head.headers, names);
        let path = format!("/ratings/{id}");
        let given = match ratings
            .outbound
            .get(&ratings.upstream, &path, headers, ratings.stars.timeout())
            .await
        {
            Ok(fetched) => fetched.ok_json().map(|body| body["ratings"].clone()),
            Err(e) => {
                tracing::warn!("{e:#}");
                None
            }
        };
        (ratings.stars.color(), given)
    }
}

/// A Kubernetes-like pod name for a replica of reviews `version`: `reviews-v2-7f9c4d5b8-x2k4q`.
pub fn pod_name(version: &str) -> String {
    let mut name = format!("reviews-{version}-");
    name.extend((0..9).map(|_| fastrand::alphanumeric().to_ascii_lowercase()));
    name.push('-');
    name.extend((0..5).map(|_| fastrand::alphanumeric().to_ascii_lowercase()));
    name
}

#[cfg(test)]
mod tests {
    use super::super::App;
    use super::super::testing::{get, start};
    use super::*;

    #[tokio::test]
    async fn v1_reviews_have_no_ratings_and_report_the_pod() {
        let addr = start(App::Reviews, "v1").await;
        let (status, body) = get(addr, "/reviews/0").await;
        assert_eq!(status, 200);
        let reviews: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(reviews["id"], "0");
        assert!(
            reviews["podname"]
                .as_str()
                .unwrap()
                .starts_with("reviews-v1-"),
            "{reviews}"
        );
        let list = reviews["reviews"].as_array().unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[0]["reviewer"], "Reviewer1");
        assert_eq!(list[1]["reviewer"], "Reviewer2");
        assert!(list.iter().all(|r| r.get("rating").is_none()), "{reviews}");
        assert_eq!(get(addr, "/health").await.0, 200);
    }

    #[test]
    fn versions_choose_the_stars() {
        assert_eq!(Stars::of_version("v1").unwrap(), None);
        assert_eq!(Stars::of_version("v2").unwrap(), Some(Stars::Black));
        assert_eq!(Stars::of_version("v3").unwrap(), Some(Stars::Red));
        let err = Stars::of_version("v4").unwrap_err().to_string();
        assert!(err.contains("v1, v2 and v3"), "{err}");
    }

    #[test]
    fn generated_pod_names_look_like_kubernetes_ones() {
        let name = pod_name("v2");
        assert!(name.starts_with("reviews-v2-"), "{name}");
        assert_eq!(name.len(), "reviews-v2-".len() + 15, "{name}");
        assert_ne!(name, pod_name("v2"), "replicas get different names");
    }
}
