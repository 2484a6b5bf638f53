//! Bookinfo's productpage: an HTML page and a JSON API over details, reviews and
//! ratings, with a sign-in whose user goes to the other services as `end-user`.

use std::fmt::Write as _;
use std::time::Duration;

use http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use http_body_util::Full;
use serde_json::{Value, json};

use super::form;
use super::outbound::{Outbound, PROPAGATED, Upstream, propagated};
use super::server::{Reply, Request};

/// How long each call to another service may take, as Istio's productpage.
const TIMEOUT: Duration = Duration::from_secs(3);

/// Headers productpage passes on besides the tracing ones: the caller's credentials.
const CREDENTIALS: [&str; 3] = ["cookie", "authorization", "jwt"];

/// The cookie that holds the signed-in user (Flask's session cookie in Istio's).
const SESSION: &str = "session";

/// The one product.
const TITLE: &str = "The Comedy of Errors";
const DESCRIPTION_HTML: &str = "<a href=\"https://en.wikipedia.org/wiki/The_Comedy_of_Errors\">Wikipedia Summary</a>: The Comedy of Errors is one of <b>William Shakespeare's</b> early plays. It is his shortest and one of his most farcical comedies, with a major part of the humour coming from slapstick and mistaken identity, in addition to puns and word play.";

/// A productpage replica and the services it calls.
#[derive(Debug)]
pub struct Productpage {
    /// How to reach the others.
    pub outbound: Outbound,
    /// The details service.
    pub details: Upstream,
    /// The reviews service.
    pub reviews: Upstream,
    /// The ratings service.
    pub ratings: Upstream,
}

impl Productpage {
    /// Calls the services named by Bookinfo's `DETAILS_HOSTNAME`, `REVIEWS_HOSTNAME` and
    /// `RATINGS_HOSTNAME` (default `details`, `reviews`, `ratings`) through `outbound`.
    pub fn from_env(outbound: Outbound) -> Productpage {
        Productpage {
            outbound,
            details: Upstream::from_env("details", "DETAILS_HOSTNAME"),
            reviews: Upstream::from_env("reviews", "REVIEWS_HOSTNAME"),
            ratings: Upstream::from_env("ratings", "RATINGS_HOSTNAME"),
        }
    }

    /// Answers the page, the sign-in and the API.
    pub async fn handle(&self, request: &Request) -> Reply {
        let path = request.path();
        match path {
            "/" | "/index.html" => Reply::html(index()),
            "/health" => Reply::text(StatusCode::OK, "Product page is healthy"),
            "/login" => login(request),
            "/logout" => redirect(request, format!("{SESSION}=; Max-Age=0; Path=/")),
            "/productpage" => Reply::html(self.page(request).await),
            "/api/v1/products" => Reply::json(StatusCode::OK, &json!([product(0)])),
            _ => match path.strip_prefix("/api/v1/products/") {
                Some(rest) => self.api(request, rest).await,
                None => Reply::not_found(path),
            },
        }
    }

    /// `/api/v1/products/<id>[/reviews|/ratings]`: the upstream's JSON and status.
    async fn api(&self, request: &Request, rest: &str) -> Reply {
        let (id, what) = rest.split_once('/').unwrap_or((rest, ""));
        let headers = forwarded(request);
        let (status, body) = match what {
            "" => self.details(id, headers).await,
            "reviews" => self.reviews(id, headers).await,
            "ratings" => {
                let path = format!("/ratings/{id}");
                let unavailable = "Sorry, product ratings are currently unavailable for this book.";
                self.fetch(&self.ratings, &path, headers, 1, unavailable)
                    .await
            }
            _ => return Reply::not_found(request.path()),
        };
        Reply::json(status, &body)
    }

    async fn details(&self, id: &str, headers: HeaderMap) -> (StatusCode, Value) {
        let unavailable = "Sorry, product details are currently unavailable for this book.";
        self.fetch(
            &self.details,
            &format!("/details/{id}"),
            headers,
            1,
            unavailable,
        )
        .await
    }

    /// Tries twice, as Istio's does on purpose: its fault injection task shows the
    /// doubled wait.
    async fn reviews(&self, id: &str, headers: HeaderMap) -> (StatusCode, Value) {
        let unavailable = "Sorry, product reviews are currently unavailable for this book.";
        self.fetch(
            &self.reviews,
            &format!("/reviews/{id}"),
            headers,
            2,
            unavailable,
        )
        .await
    }

    /// GETs `path` up to `attempts` times until a 200 with JSON; else the last status
    /// (500 when there was no answer) and `unavailable` as the error.
    async fn fetch(
        &self,
        upstream: &Upstream,
        path: &str,
        headers: HeaderMap,
        attempts: usize,
        unavailable: &str,
    ) -> (StatusCode, Value) {
        let mut status = StatusCode::INTERNAL_SERVER_ERROR;
        for _ in 0..attempts {
            match self
                .outbound
                .get(upstream, path, headers.clone(), TIMEOUT)
                .await
            {
                Ok(fetched) => match fetched.ok_json() {
                    Some(body) => return (StatusCode::OK, body),
                    None => status = fetched.status,
                },
                Err(e) => {
                    tracing::warn!("{e:#}");
                    status = StatusCode::INTERNAL_SERVER_ERROR;
                }
            }
        }
        (status, json!({"error": unavailable}))
    }

    async fn page(&self, request: &Request) -> String {
        let headers = forwarded(request);
        let (details_status, details) = self.details("0", headers.clone()).await;
        let (reviews_status, reviews) = self.reviews("0", headers).await;
        let mut page = String::from(
            "<!DOCTYPE html>\n<html>\n<head><meta charset=\"utf-8\"><title>Simple Bookstore App</title></head>\n<body>\n<nav><b>BookInfo Sample</b> ",
        );
        match session_user(&request.head.headers) {
            Some(user) => {
                let _ = write!(page, "{} ( <a href=\"logout\">sign out</a> )", escape(&user));
            }
            None => page.push_str(
                "<form method=\"post\" action=\"login\" name=\"login_form\"><input type=\"text\" name=\"username\" placeholder=\"User Name\"> <input type=\"password\" name=\"passwd\" placeholder=\"Password\"> <button type=\"submit\">Sign in</button></form>",
            ),
        }
        let _ = write!(
            page,
            "</nav>\n<h3>{TITLE}</h3>\n<p>Summary: {DESCRIPTION_HTML}</p>\n"
        );
        page.push_str("<div class=\"details\">\n");
        if details_status == StatusCode::OK {
            page.push_str("<h4>Book Details</h4>\n<dl>\n");
            for (label, key) in [
                ("Type", "type"),
                ("Pages", "pages"),
                ("Publisher", "publisher"),
                ("Language", "language"),
                ("ISBN-10", "ISBN-10"),
                ("ISBN-13", "ISBN-13"),
            ] {
                let _ = writeln!(page, "<dt>{label}:</dt><dd>{}</dd>", text(&details[key]));
            }
            page.push_str("</dl>\n");
        } else {
            error_section(&mut page, "Error fetching product details!", &details);
        }
        page.push_str("</div>\n<div class=\"reviews\">\n");
        if reviews_status == StatusCode::OK {
            reviews_section(&mut page, &reviews);
        } else {
            error_section(&mut page, "Error fetching product reviews!", &reviews);
        }
        page.push_str("</div>\n</body>\n</html>\n");
        page
    }
}

fn reviews_section(page: &mut String, reviews: &Value) {
    page.push_str("<h4>Book Reviews</h4>\n");
    for review in reviews["reviews"].as_array().into_iter().flatten() {
        let _ = write!(
            page,
            "<blockquote>\n<p>{}</p>\n<small>{}</small>\n",
            text(&review["text"]),
            text(&review["reviewer"])
        );
        let rating = &review["rating"];
        if let Some(stars) = rating["stars"].as_u64() {
            let full = stars.min(5) as usize;
            let _ = writeln!(
                page,
                "<span class=\"stars\" style=\"color: {}\">{}{}</span>",
                text(&rating["color"]),
                "★".repeat(full),
                "☆".repeat(5 - full)
            );
        } else if rating["error"].is_string() {
            let _ = writeln!(page, "<p><i>{}</i></p>", text(&rating["error"]));
        }
        page.push_str("</blockquote>\n");
    }
    let _ = write!(
        page,
        "<dl><dt>Reviews served by:</dt>\n<dd><u>{}</u>",
        text(&reviews["podname"])
    );
    if reviews["clustername"].as_str().is_some_and(|c| c != "null") {
        let _ = write!(page, " on cluster <u>{}</u>", text(&reviews["clustername"]));
    }
    page.push_str("</dd></dl>\n");
}

fn error_section(page: &mut String, title: &str, body: &Value) {
    let _ = writeln!(page, "<h4>{title}</h4>\n<p>{}</p>", text(&body["error"]));
}

/// The landing page: where to go.
fn index() -> String {
    "<!DOCTYPE html>\n<html>\n<head><meta charset=\"utf-8\"><title>Simple Bookstore App</title></head>\n<body>\n<h3>Hello! This is a simple bookstore application consisting of three services as shown below</h3>\n<p>productpage calls details and reviews; reviews v2 and v3 call ratings.</p>\n<p><a href=\"productpage?u=normal\">Normal user</a> | <a href=\"productpage?u=test\">Test user</a></p>\n</body>\n</html>\n".to_owned()
}

fn product(id: u32) -> Value {
    json!({"id": id, "title": TITLE, "descriptionHtml": DESCRIPTION_HTML})
}

/// Signs in the user named by the form's `username` (POST) or the query's `user` or
/// `username` (GET), then returns the caller to where it came from.
fn login(request: &Request) -> Reply {
    let from_query = || {
        form::value(request.query(), "user").or_else(|| form::value(request.query(), "username"))
    };
    let user = match request.head.method {
        http::Method::POST => {
            form::value(&String::from_utf8_lossy(&request.body), "username").or_else(from_query)
        }
        _ => from_query(),
    };
    let Some(user) = user.filter(|u| !u.is_empty()) else {
        return Reply::text(StatusCode::BAD_REQUEST, "login: no username given\n");
    };
    redirect(
        request,
        format!("{SESSION}={}; Path=/; HttpOnly", form::encode(&user)),
    )
}

/// A 302 back to the referring page (the product page when there is none) that sets
/// `cookie`.
fn redirect(request: &Request, cookie: String) -> Reply {
    let location = request
        .head
        .headers
        .get(header::REFERER)
        .cloned()
        .unwrap_or(HeaderValue::from_static("/productpage"));
    let mut response = Response::new(Full::default());
    *response.status_mut() = StatusCode::FOUND;
    response.headers_mut().insert(header::LOCATION, location);
    if let Ok(cookie) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    Reply::Response(response)
}

/// The signed-in user, from the session cookie.
fn session_user(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| c.trim().strip_prefix(SESSION)?.strip_prefix('='))
        .map(form::decode)
        .filter(|u| !u.is_empty())
}

/// The headers to send to other services: tracing, credentials and `end-user` for the
/// signed-in user (which the mesh can route on).
fn forwarded(request: &Request) -> HeaderMap {
    let incoming = &request.head.headers;
    let mut headers = propagated(incoming, PROPAGATED.iter().chain(&CREDENTIALS).copied());
    if let Some(value) = session_user(incoming).and_then(|u| HeaderValue::from_str(&u).ok()) {
        headers.insert("end-user", value);
    }
    headers
}

/// A JSON value as escaped HTML text (strings without their quotes).
fn text(value: &Value) -> String {
    match value {
        Value::String(s) => escape(s),
        Value::Null => String::new(),
        other => escape(&other.to_string()),
    }
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use http::Method;

    use super::super::reviews::{Ratings, Reviews, Stars};
    use super::super::testing::{Proxy, call, get, serve, start};
    use super::super::{App, Service};
    use super::*;

    /// Bookinfo with reviews `version` (pod `reviews-<version>-test`) behind a recording
    /// proxy; returns productpage's address and the proxy.
    async fn bookinfo(version: &str) -> (SocketAddr, Proxy) {
        let proxy = Proxy::start().await;
        proxy.route("details:9080", start(App::Details, "v1").await);
        proxy.route("ratings:9080", start(App::Ratings, "v1").await);
        let reviews = serve(Service::Reviews(Reviews {
            pod_name: format!("reviews-{version}-test"),
            cluster_name: "null".into(),
            ratings: Stars::of_version(version).unwrap().map(|stars| Ratings {
                stars,
                outbound: Outbound::through(proxy.addr),
                upstream: Upstream::at("ratings", "RATINGS_HOSTNAME", "ratings"),
            }),
        }))
        .await;
        proxy.route("reviews:9080", reviews);
        let productpage = serve(Service::Productpage(productpage(Outbound::through(
            proxy.addr,
        ))))
        .await;
        (productpage, proxy)
    }

    fn productpage(outbound: Outbound) -> Productpage {
        Productpage {
            outbound,
            details: Upstream::at("details", "DETAILS_HOSTNAME", "details"),
            reviews: Upstream::at("reviews", "REVIEWS_HOSTNAME", "reviews"),
            ratings: Upstream::at("ratings", "RATINGS_HOSTNAME", "ratings"),
        }
    }

    #[tokio::test]
    async fn page_shows_details_reviews_stars_per_version_and_the_pod() {
        for (version, stars) in [("v1", None), ("v2", Some("black")), ("v3", Some("red"))] {
            let (productpage, proxy) = bookinfo(version).await;
            let (status, page) = get(productpage, "/productpage").await;
            assert_eq!(status, 200, "{page}");
            assert!(page.contains("<h3>The Comedy of Errors</h3>"), "{page}");
            assert!(page.contains("<dt>Type:</dt><dd>paperback</dd>"), "{page}");
            assert!(
                page.contains("<dt>ISBN-13:</dt><dd>123-1234567890</dd>"),
                "{page}"
            );
            assert!(page.contains("<small>Reviewer1</small>"), "{page}");
            assert!(page.contains("Reviews served by:"), "{page}");
            assert!(
                page.contains(&format!("<u>reviews-{version}-test</u>")),
                "{page}"
            );
            match stars {
                None => assert!(!page.contains('★'), "{version}: {page}"),
                Some(color) => {
                    // Reviewer1 gave 5 stars, Reviewer2 4.
                    let style = format!("<span class=\"stars\" style=\"color: {color}\">");
                    assert!(page.contains(&format!("{style}★★★★★</span>")), "{page}");
                    assert!(page.contains(&format!("{style}★★★★☆</span>")), "{page}");
                }
            }
            let targets: Vec<_> = proxy.seen().into_iter().map(|s| s.target).collect();
            let mut expected = vec![
                "http://details:9080/details/0",
                "http://reviews:9080/reviews/0",
            ];
            if stars.is_some() {
                expected.push("http://ratings:9080/ratings/0");
            }
            assert_eq!(
                targets, expected,
                "calls go through the proxy in absolute form"
            );
        }
    }

    #[tokio::test]
    async fn forwards_tracing_headers_and_the_signed_in_user() {
        let (productpage, proxy) = bookinfo("v2").await;
        let login = call(
            productpage,
            Method::POST,
            "/login",
            &[
                ("content-type", "application/x-www-form-urlencoded"),
                ("referer", "http://bookinfo/productpage"),
            ],
            "username=jason&passwd=",
        )
        .await;
        assert_eq!(login.status, 302);
        assert_eq!(login.headers["location"], "http://bookinfo/productpage");
        let cookie = login.headers["set-cookie"].to_str().unwrap();
        assert!(cookie.starts_with("session=jason;"), "{cookie}");

        let trace = [
            ("x-request-id", "req-1"),
            ("x-b3-traceid", "80f198ee56343ba864fe8b2a57d3eff7"),
            ("x-b3-spanid", "e457b5a2e4d86bd1"),
            ("x-b3-parentspanid", "05e3ac9a4f6e3b90"),
            ("x-b3-sampled", "1"),
            ("b3", "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-1"),
            (
                "traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            ),
            ("tracestate", "congo=t61rcWkgMzE"),
            ("x-ot-span-context", "span"),
        ];
        let mut headers = trace.to_vec();
        headers.push(("cookie", "session=jason"));
        let page = call(productpage, Method::GET, "/productpage", &headers, "").await;
        assert!(
            page.body
                .contains("jason ( <a href=\"logout\">sign out</a> )"),
            "{}",
            page.body
        );
        for target in [
            "http://details:9080/details/0",
            "http://reviews:9080/reviews/0",
            "http://ratings:9080/ratings/0",
        ] {
            let seen = proxy.request_for(target);
            for (name, value) in trace {
                assert_eq!(seen.header(name), Some(value), "{target}: {name}");
            }
            assert_eq!(seen.header("end-user"), Some("jason"), "{target}");
        }
        // Signed out, no user goes along.
        let anonymous = Proxy::start().await;
        let alone = serve(Service::Productpage(productpage_through(anonymous.addr))).await;
        call(alone, Method::GET, "/productpage", &trace, "").await;
        assert!(
            anonymous
                .seen()
                .iter()
                .all(|s| s.header("end-user").is_none())
        );
    }

    fn productpage_through(proxy: SocketAddr) -> Productpage {
        productpage(Outbound::through(proxy))
    }

    #[tokio::test]
    async fn login_by_query_and_logout() {
        let (productpage, _proxy) = bookinfo("v1").await;
        let login = call(productpage, Method::GET, "/login?user=jason", &[], "").await;
        assert_eq!(login.status, 302);
        assert_eq!(login.headers["location"], "/productpage");
        assert!(
            login.headers["set-cookie"]
                .to_str()
                .unwrap()
                .starts_with("session=jason;")
        );
        let logout = call(productpage, Method::GET, "/logout", &[], "").await;
        assert_eq!(logout.status, 302);
        assert!(
            logout.headers["set-cookie"]
                .to_str()
                .unwrap()
                .starts_with("session=;")
        );
        assert_eq!(
            call(productpage, Method::GET, "/login", &[], "")
                .await
                .status,
            400
        );
    }

    #[tokio::test]
    async fn api_answers_products_details_reviews_and_ratings() {
        let (productpage, proxy) = bookinfo("v3").await;
        let (status, body) = get(productpage, "/api/v1/products").await;
        assert_eq!(status, 200);
        let products: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(products[0]["id"], 0);
        assert_eq!(products[0]["title"], "The Comedy of Errors");

        let (status, body) = get(productpage, "/api/v1/products/0").await;
        assert_eq!(status, 200);
        assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["pages"], 200);

        let (status, body) = get(productpage, "/api/v1/products/0/reviews").await;
        assert_eq!(status, 200);
        let reviews: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(reviews["podname"], "reviews-v3-test");
        assert_eq!(
            reviews["reviews"][0]["rating"],
            json!({"stars": 5, "color": "red"})
        );

        let (status, body) = get(productpage, "/api/v1/products/0/ratings").await;
        assert_eq!(status, 200);
        assert_eq!(
            serde_json::from_str::<Value>(&body).unwrap()["ratings"]["Reviewer2"],
            4
        );
        proxy.request_for("http://ratings:9080/ratings/0");

        let (status, body) = get(productpage, "/health").await;
        assert_eq!((status, body.as_str()), (200, "Product page is healthy"));
    }

    #[tokio::test]
    async fn unavailable_services_show_errors_with_their_status() {
        // The proxy knows no service: it answers 502 to everything.
        let proxy = Proxy::start().await;
        let productpage = serve(Service::Productpage(productpage_through(proxy.addr))).await;
        let (status, page) = get(productpage, "/productpage").await;
        assert_eq!(status, 200);
        assert!(page.contains("Error fetching product details!"), "{page}");
        assert!(page.contains("Error fetching product reviews!"), "{page}");
        assert!(
            page.contains("Sorry, product reviews are currently unavailable"),
            "{page}"
        );
        let (status, body) = get(productpage, "/api/v1/products/0").await;
        assert_eq!(status, 502, "{body}");
        let reviews_calls = proxy
            .seen()
            .iter()
            .filter(|s| s.target == "http://reviews:9080/reviews/0")
            .count();
        assert_eq!(
            reviews_calls, 2,
            "reviews is tried twice, as Istio's productpage does"
        );
    }

    #[tokio::test]
    async fn without_a_proxy_calls_the_hosts_it_is_given() {
        let details = start(App::Details, "v1").await;
        let productpage = serve(Service::Productpage(Productpage {
            outbound: Outbound::direct(),
            details: Upstream::at("details", "DETAILS_HOSTNAME", &details.to_string()),
            // Nothing listens on port 1.
            reviews: Upstream::at("reviews", "REVIEWS_HOSTNAME", "127.0.0.1:1"),
            ratings: Upstream::at("ratings", "RATINGS_HOSTNAME", "127.0.0.1:1"),
        }))
        .await;
        assert_eq!(get(productpage, "/api/v1/products/0").await.0, 200);
        let (status, body) = get(productpage, "/api/v1/products/0/reviews").await;
        assert_eq!(status, 500);
        assert!(
            body.contains("Sorry, product reviews are currently unavailable"),
            "{body}"
        );
    }

    #[test]
    fn escapes_html() {
        assert_eq!(
            escape("<a href=\"x\">Tom & 'Jerry'</a>"),
            "&lt;a href=&quot;x&quot;&gt;Tom &amp; &#39;Jerry&#39;&lt;/a&gt;"
        );
    }
}
