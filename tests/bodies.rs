//! Typed JSON bodies over real HTTP: the `board` test guest's `Order` has
//! every kind of field (nested objects, a list of them, optional fields,
//! defaults, a float, a named type, any JSON, a renamed field, an object
//! that allows unknown fields). The host checks each before the call and
//! answers 400 naming the path and the rule; the guest echoes what it
//! received, so decoding is checked too. `house check`, `/_house/guests`
//! and OpenAPI show the schema.

use house_tests::{Server, TempDir, test_guest};
use serde_json::{Value, json};

fn board(flags: &[&str]) -> Server {
    let dir = TempDir::new("guests");
    std::fs::copy(test_guest("board"), dir.path().join("board.wasm")).unwrap();
    let mut all = vec!["--quiet"];
    all.extend_from_slice(flags);
    Server::start_in(dir, &all)
}

fn order() -> Value {
    json!({
        "order-id": 7,
        "lines": [{"sku": "tea", "qty": 2}, {"sku": "cup-1", "qty": 1}],
        "ship_to": {"city": "Lyon", "country": "FR", "floor": 3},
        "discount": 0.25,
    })
}

#[test]
fn a_valid_body_reaches_the_guest_typed_with_defaults_and_optionals() {
    let s = board(&[]);
    let r = s.post_json("/order", &[], &order().to_string());
    assert_eq!(r.status, 200, "{}", r.body);
    let echoed: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(
        echoed,
        json!({"order-id": 7, "lines": [{"sku": "tea", "qty": 2}, {"sku": "cup-1", "qty": 1}],
               "ship_to": {"city": "Lyon", "country": "FR"}, "discount": 0.25, "gift": false, "via": "post",
               "bill_to": null, "note": null, "priority": null, "extra": null, "codes": null}),
        "defaults filled in, absent optionals None, the unknown floor of an allow_unknown object dropped"
    );
    let mut full = order();
    full["bill_to"] = json!({"city": "Nice", "country": "FR"});
    full["gift"] = json!(true);
    full["via"] = json!("courier");
    full["note"] = json!("ring twice ✓");
    full["priority"] = json!(5);
    full["extra"] = json!({"any": ["json", 1, null]});
    full["codes"] = json!([3, -4]);
    full["discount"] = json!(1);
    full["order-id"] = json!(8.0);
    let r = s.post_json("/order", &[], &full.to_string());
    assert_eq!(r.status, 200, "{}", r.body);
    let echoed: Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(echoed["bill_to"], json!({"city": "Nice", "country": "FR"}));
    assert_eq!((echoed["gift"].clone(), echoed["via"].clone()), (json!(true), json!("courier")));
    assert_eq!(echoed["note"], json!("ring twice ✓"));
    assert_eq!((echoed["priority"].clone(), echoed["codes"].clone()), (json!(5), json!([3, -4])));
    assert_eq!(echoed["extra"], json!({"any": ["json", 1, null]}));
    assert_eq!(
        (echoed["discount"].as_f64(), echoed["order-id"].clone()),
        (Some(1.0), json!(8)),
        "1 is a number, 8.0 an integer"
    );
    let mut nulls = order();
    nulls["note"] = Value::Null;
    nulls["bill_to"] = Value::Null;
    assert_eq!(s.post_json("/order", &[], &nulls.to_string()).status, 200, "null is absent for an Option");
}

/// Each rule at its bound: the last value it takes passes, the first it
/// refuses is a 400 whose text names the path and the rule.
#[test]
fn each_refusal_names_the_path_and_the_rule() {
    let s = board(&[]);
    let with = |path: &[&str], v: Value| {
        let mut o = order();
        let mut at = &mut o;
        for (i, p) in path.iter().enumerate() {
            if i + 1 == path.len() {
                break;
            }
            at = match p.parse::<usize>() {
                Ok(n) => &mut at[n],
                Err(_) => &mut at[*p],
            };
        }
        let last = path[path.len() - 1];
        match last.parse::<usize>() {
            Ok(n) => at[n] = v,
            Err(_) if v.is_null() && last.starts_with('-') => {
                at.as_object_mut().unwrap().remove(&last[1..]);
            }
            Err(_) => at[last] = v,
        }
        o
    };
    let ok = |doc: Value| {
        let r = s.post_json("/order", &[], &doc.to_string());
        assert_eq!(r.status, 200, "{doc}: {}", r.body);
    };
    let refused = |doc: Value, why: &str| {
        let r = s.post_json("/order", &[], &doc.to_string());
        assert_eq!((r.status, r.body.trim_end()), (400, why), "{doc}");
    };
    ok(with(&["lines", "0", "qty"], json!(99)));
    refused(with(&["lines", "1", "qty"], json!(100)), "body.lines[1].qty: 100 is above the maximum 99");
    ok(with(&["lines", "0", "qty"], json!(1)));
    refused(with(&["lines", "1", "qty"], json!(0)), "body.lines[1].qty: 0 is below the minimum 1");
    refused(with(&["lines", "0", "qty"], json!("2")), "body.lines[0].qty: \"2\" is not an integer");
    refused(with(&["lines", "0", "qty"], json!(2.5)), "body.lines[0].qty: 2.5 is not a 64-bit integer");
    ok(with(&["lines", "0", "sku"], json!("x".repeat(12))));
    refused(
        with(&["lines", "0", "sku"], json!("x".repeat(13))),
        "body.lines[0].sku: length 13 is above the maximum 12",
    );
    refused(
        with(&["lines", "0", "sku"], json!("Tea")),
        "body.lines[0].sku: \"Tea\" is not a keyword (a-z, 0-9, '-', '_', '.')",
    );
    refused(with(&["lines"], json!([])), "body.lines: 0 items is below the minimum 1");
    ok(with(&["lines"], Value::Array(vec![json!({"sku": "a", "qty": 1}); 4])));
    refused(
        with(&["lines"], Value::Array(vec![json!({"sku": "a", "qty": 1}); 5])),
        "body.lines: 5 items is above the maximum 4",
    );
    refused(with(&["lines"], json!({"sku": "a"})), "body.lines: an object is not a list");
    refused(
        with(&["lines", "0"], json!({"sku": "a", "qty": 1, "colour": "red"})),
        "body.lines[0]: \"colour\" is not a field of Line (it has sku, qty)",
    );
    refused(with(&["lines", "0", "-qty"], Value::Null), "body.lines[0].qty: missing (a required integer)");
    refused(with(&["-lines"], Value::Null), "body.lines: missing (a required list of Line)");
    refused(with(&["ship_to", "country"], json!("FRA")), "body.ship_to.country: length 3 is above the maximum 2");
    refused(with(&["ship_to"], json!("Lyon")), "body.ship_to: \"Lyon\" is not an object");
    refused(with(&["ship_to"], Value::Null), "body.ship_to: null is not an object");
    ok(with(&["discount"], json!(1.0)));
    refused(with(&["discount"], json!(1.0001)), "body.discount: 1.0001 is above the maximum 1");
    refused(with(&["discount"], json!(-0.5)), "body.discount: -0.5 is below the minimum 0");
    refused(with(&["gift"], json!("yes")), "body.gift: \"yes\" is not a boolean (true or false)");
    refused(with(&["via"], json!("pigeon")), "body.via: \"pigeon\" is not one of \"post\", \"courier\"");
    refused(with(&["priority"], json!(6)), "body.priority: 6 is above the maximum 5");
    refused(with(&["order-id"], json!(0)), "body.order-id: 0 is below the minimum 1");
    refused(with(&["codes"], json!([1, 2, 3, 4])), "body.codes: 4 items is above the maximum 3");
    refused(with(&["codes"], json!(["1"])), "body.codes[0]: \"1\" is not an integer");
    refused(
        with(&["order_id"], json!(1)),
        "body: \"order_id\" is not a field of Order (it has order-id, lines, ship_to, bill_to, discount, gift, via, note, priority, extra, codes)",
    );
    refused(json!([order()]), "body: a list is not an object");
    refused(json!(null), "body: null is not an object");
    let r = s.post_json("/order", &[], "{\"order-id\": 1,");
    assert_eq!((r.status, r.body.trim_end()), (400, "body: not valid JSON"));
    let r = s.send("POST", "/order", &[("Content-Type", "text/plain")], &order().to_string());
    assert_eq!(r.status, 415, "{}", r.body);
    let r = s.send("POST", "/order", &[], "");
    assert_eq!((r.status, r.body.trim_end()), (400, "body: missing (a required JSON body)"));
    // A long quoted value is cut short in the error: errors are one line.
    let r = s.post_json("/order", &[], &with(&["via"], json!("v".repeat(500))).to_string());
    assert_eq!(r.body.trim_end(), format!("body.via: \"{}\"... is not one of \"post\", \"courier\"", "v".repeat(32)));
    // None of the refusals made a call: the guest ran for the 5 valid ones.
    let metrics = s.admin_get("/_house/metrics").body;
    let calls: u64 = metrics
        .lines()
        .filter(|l| l.starts_with("house_guest_calls_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert_eq!(calls, 5, "{metrics}");
}

#[test]
fn the_schema_is_in_check_guests_and_openapi() {
    let s = board(&[]);
    let guests = s.admin_get("/_house/guests");
    let guests: Value = serde_json::from_str(&guests.body).unwrap();
    let module = &guests["guests"][0];
    let types = module["types"].as_array().unwrap();
    let order = types.iter().find(|t| t["name"] == "Order").expect("Order among the types");
    assert_eq!(order["base"], "object");
    let fields: Vec<&str> = order["fields"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert_eq!(
        fields,
        ["order-id", "lines", "ship_to", "bill_to", "discount", "gift", "via", "note", "priority", "extra", "codes"]
    );
    let handler = module["handlers"].as_array().unwrap().iter().find(|h| h["name"] == "order").unwrap();
    assert_eq!(handler["params"][0]["schema"]["properties"]["lines"]["maxItems"], 4);

    let api: Value = serde_json::from_str(&s.admin_get("/_house/openapi.json").body).unwrap();
    let schema = &api["paths"]["/order"]["post"]["requestBody"]["content"]["application/json"]["schema"];
    assert_eq!(schema["required"], json!(["order-id", "lines", "ship_to", "discount"]));
    assert_eq!(schema["additionalProperties"], json!(false));
    assert_eq!(schema["properties"]["lines"]["items"]["properties"]["qty"]["maximum"], 99);
    assert_eq!(schema["properties"]["ship_to"].get("additionalProperties"), None, "Address allows unknown fields");
    assert_eq!(schema["properties"]["via"]["default"], "post");
    assert_eq!(schema["properties"]["priority"]["anyOf"][1], json!({"type": "null"}));

    let out = std::process::Command::new(house_tests::house_bin())
        .args(["check", test_guest("board").to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("type Order: object, fields ["), "{text}");
    assert!(text.contains("body (body): Order, required"), "{text}");
    assert!(text.contains("token (token): Claims, or cookie board_token, required"), "{text}");
}
