//! Bookinfo's details service: a book's facts by product id.

use http::StatusCode;
use serde_json::json;

use super::server::{Reply, Request};

/// Answers `/health` and `/details/<id>`.
pub fn handle(request: &Request) -> Reply {
    let path = request.path();
    if path == "/health" {
        return Reply::json(StatusCode::OK, &json!({"status": "Details is healthy"}));
    }
    let Some(id) = path.strip_prefix("/details/") else {
        return Reply::not_found(path);
    };
    match id.parse::<i64>() {
        Ok(id) => Reply::json(StatusCode::OK, &book(id)),
        Err(_) => Reply::json(
            StatusCode::BAD_REQUEST,
            &json!({"error": "please provide numeric product id"}),
        ),
    }
}

/// The one book Bookinfo knows, whatever the id.
fn book(id: i64) -> serde_json::Value {
    json!({
        "id": id,
        "author": "William Shakespeare",
        "year": 1595,
        "type": "paperback",
        "pages": 200,
        "publisher": "PublisherA",
        "language": "English",
        "ISBN-10": "1234567890",
        "ISBN-13": "123-1234567890",
    })
}

#[cfg(test)]
mod tests {
    use super::super::App;
    use super::super::testing::{get, start};

    #[tokio::test]
    async fn answers_book_details_and_health() {
        let addr = start(App::Details, "v1").await;
        let (status, body) = get(addr, "/details/0").await;
        assert_eq!(status, 200);
        let details: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(details["id"], 0);
        assert_eq!(details["author"], "William Shakespeare");
        assert_eq!(details["type"], "paperback");
        assert_eq!(details["pages"], 200);
        assert_eq!(details["publisher"], "PublisherA");
        assert_eq!(details["language"], "English");
        assert_eq!(details["ISBN-10"], "1234567890");
        assert_eq!(details["ISBN-13"], "123-1234567890");

        let (status, body) = get(addr, "/health").await;
        assert_eq!(
            (status, body.as_str()),
            (200, r#"{"status":"Details is healthy"}"#)
        );
    }

    #[tokio::test]
    async fn refuses_a_non_numeric_id() {
        let addr = start(App::Details, "v1").await;
        let (status, body) = get(addr, "/details/abc").await;
        assert_eq!(status, 400);
        assert!(body.contains("please provide numeric product id"), "{body}");
        assert_eq!(get(addr, "/nothing").await.0, 404);
    }
}
