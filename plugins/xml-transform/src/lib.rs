//! `xml-transform`: turns any event into one XML document (`application/xml`)
//! for the subscription's default destination, using the SDK's JSON → XML
//! mapping, with the event's metadata as attributes of the root element.
//! See README.md for the configuration and an example.

use odoo_gateway_plugin_sdk::xml::{XmlBuilder, is_xml_name};
use odoo_gateway_plugin_sdk::{Config, ConfigError, Delivery, Event, Plugin, PluginError, Record};
use serde_json::{Map, Value};

/// The plugin.
#[derive(Debug)]
pub struct XmlTransform;

/// The validated configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Root element name; `None` derives it from the model.
    pub root: Option<String>,
    /// Fields to write (always in name order, like every object); empty
    /// writes every field.
    pub fields: Vec<String>,
}

impl Settings {
    /// Reads `root` (an XML name) and `fields` (comma list of XML names).
    pub fn from_config(config: &Config) -> Result<Self, ConfigError> {
        let root = config.get("root").map(str::trim).filter(|r| !r.is_empty());
        if let Some(root) = root
            && !is_xml_name(root)
        {
            return Err(ConfigError::invalid(
                "root",
                root,
                "not a valid XML element name",
            ));
        }
        let fields = config.list("fields");
        if let Some(bad) = fields.iter().find(|f| !is_xml_name(f)) {
            return Err(ConfigError::invalid(
                "fields",
                config.get_or("fields", ""),
                format!("`{bad}` is not a valid XML element name"),
            ));
        }
        Ok(Self {
            root: root.map(str::to_owned),
            fields: fields.into_iter().map(str::to_owned).collect(),
        })
    }

    /// The root element name for `model`: the configured one, or the model
    /// with dots turned into underscores (`sale.order` → `sale_order`).
    pub fn root_for(&self, model: &str) -> String {
        self.root.clone().unwrap_or_else(|| model.replace('.', "_"))
    }
}

/// The XML document for `event`: the selected fields of its payload under
/// a root element carrying `event_id`, `source`, `model`, `action` and, when
/// known, `record_id`.
pub fn transform(event: &Event, settings: &Settings) -> Result<Vec<u8>, PluginError> {
    let payload = event.payload_json()?;
    let record = Record::new(&payload)?;
    let content = if settings.fields.is_empty() {
        payload.clone()
    } else {
        // Fields absent from the payload are left out; `false` ones are kept.
        let selected: Map<String, Value> = settings
            .fields
            .iter()
            .filter_map(|f| Some((f.clone(), record.fields().get(f)?.clone())))
            .collect();
        Value::Object(selected)
    };
    let mut builder = XmlBuilder::new(&settings.root_for(&event.model))
        .attribute("event_id", event.id.as_str())
        .attribute("source", event.source.as_str())
        .attribute("model", event.model.as_str())
        .attribute("action", event.action.as_str());
    if let Some(record_id) = event.record_id {
        builder = builder.attribute("record_id", record_id.to_string());
    }
    builder
        .build(&content)
        .map_err(|e| PluginError::Reject(format!("cannot write event {} as XML: {e}", event.id)))
}

impl Plugin for XmlTransform {
    fn handle(event: Event, config: &Config) -> Result<Vec<Delivery>, PluginError> {
        let settings = Settings::from_config(config)?;
        Ok(vec![Delivery::xml("", transform(&event, &settings)?)])
    }

    fn validate_config(config: &Config) -> Result<(), String> {
        Settings::from_config(config)?;
        Ok(())
    }
}

odoo_gateway_plugin_sdk::export_plugin!(XmlTransform);

#[cfg(test)]
mod tests;
