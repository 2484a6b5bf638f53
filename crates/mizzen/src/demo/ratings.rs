//! Bookinfo's ratings service: the stars each reviewer gave a product.

use http::StatusCode;
use serde_json::json;

use super::server::{Reply, Request};

/// Answers `/health` and `/ratings/<id>`.
pub fn handle(request: &Request) -> Reply {
    let path = request.path();
    if path == "/health" {
        return Reply::json(StatusCode::OK, &json!({"status": "Ratings is healthy"}));
    }
    let Some(id) = path.strip_prefix("/ratings/") else {
        return Reply::not_found(path);
    };
    match id.parse::<i64>() {
        Ok(id) => Reply::json(
            StatusCode::OK,
            &json!({"id": id, "ratings": {"Reviewer1": 5, "Reviewer2": 4}}),
        ),
        Err(_) => Reply::json(
            StatusCode::BAD_REQUEST,
            &json!({"error": "please provide numeric product ID"}),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::super::App;
    use super::super::testing::{get, start};

    #[tokio::test]
    async fn answers_each_reviewers_stars_and_health() {
        let addr = start(App::Ratings, "v1").await;
        let (status, body) = get(addr, "/ratings/7").await;
        assert_eq!(status, 200);
        let ratings: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            ratings,
            serde_json::json!({"id": 7, "ratings": {"Reviewer1": 5, "Reviewer2": 4}})
        );
        assert_eq!(get(addr, "/ratings/x").await.0, 400);
        let (status, body) = get(addr, "/health").await;
        assert_eq!(
            (status, body.as_str()),
            (200, r#"{"status":"Ratings is healthy"}"#)
        );
    }
}
