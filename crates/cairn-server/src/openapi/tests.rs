//! The document's own rules: references rebased into the components, a workflow's schema
//! with its `$defs` moved beside it.

use super::*;

#[test]
fn an_imported_schema_keeps_its_definitions_beside_it() {
    let mut doc = Doc::new();
    let input = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {"customer": {"$ref": "#/$defs/Customer"}},
        "$defs": {
            "Customer": {"type": "object", "properties": {"address": {"$ref": "#/$defs/Address"}}},
            "Address": {"type": "string"},
        },
    });
    let reference = doc.import("order.input", &input);
    assert_eq!(
        reference,
        json!({"$ref": "#/components/schemas/order.input"})
    );
    let imported = &doc.imported;
    assert_eq!(
        imported["order.input"],
        json!({"type": "object", "properties": {"customer": {"$ref": "#/components/schemas/order.input.Customer"}}})
    );
    assert_eq!(
        imported["order.input.Customer"]["properties"]["address"],
        json!({"$ref": "#/components/schemas/order.input.Address"})
    );
    assert_eq!(imported["order.input.Address"], json!({"type": "string"}));
}

#[test]
fn protected_operations_list_401_and_operations_with_bodies_their_refusals() {
    let problem = json!({"$ref": "#/components/schemas/Problem"});
    let protected = Op::new("x", "x").body(json!({}), true).finish(&problem);
    for status in ["400", "401", "413", "415", "default"] {
        assert!(protected["responses"][status].is_object(), "{status}");
    }
    let open = Op::new("y", "y").open().finish(&problem);
    assert!(open["responses"]["401"].is_null());
    assert!(open.get("parameters").is_none());
}
