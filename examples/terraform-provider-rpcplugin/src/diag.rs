//! Diagnostics: what Terraform shows the user, with severity, summary, detail, and
//! the attribute it underlines in the configuration.

use crate::pb::{AttributePath, Diagnostic, attribute_path, diagnostic::Severity};

/// An error about the attribute `attribute` of the block being checked.
pub fn attribute_error(
    attribute: &str,
    summary: impl Into<String>,
    detail: impl Into<String>,
) -> Diagnostic {
    Diagnostic {
        attribute: Some(attribute_path(attribute)),
        ..error(summary, detail)
    }
}

/// An error about no attribute in particular.
pub fn error(summary: impl Into<String>, detail: impl Into<String>) -> Diagnostic {
    Diagnostic {
        severity: Severity::Error as i32,
        summary: summary.into(),
        detail: detail.into(),
        attribute: None,
    }
}

/// The path of a top-level attribute.
pub fn attribute_path(name: &str) -> AttributePath {
    AttributePath {
        steps: vec![attribute_path::Step {
            selector: Some(attribute_path::step::Selector::AttributeName(
                name.to_owned(),
            )),
        }],
    }
}

/// An error for a value Terraform sent that this provider cannot read: Terraform
/// and the provider disagree about the schema, which the user cannot fix.
pub fn undecodable(what: &str, err: &dyn std::error::Error) -> Diagnostic {
    error(
        format!("Invalid {what} from Terraform"),
        format!(
            "The provider could not read the {what} Terraform sent: {err}. This is a bug in \
             the provider or in Terraform; please report it."
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_attribute_error_names_its_attribute() {
        let d = attribute_error("permissions", "Invalid permissions", "not octal");
        assert_eq!(d.severity, Severity::Error as i32);
        assert_eq!(d.summary, "Invalid permissions");
        assert_eq!(d.detail, "not octal");
        let steps = d.attribute.unwrap().steps;
        assert_eq!(steps.len(), 1);
        assert_eq!(
            steps[0].selector,
            Some(attribute_path::step::Selector::AttributeName(
                "permissions".into()
            ))
        );
    }
}
