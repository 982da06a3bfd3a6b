//! A project's HAVIPs as a spreadsheet (.xlsx) or CSV, one row per VIP.

use crate::model::Havip;

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("xlsx: {0}")]
    Xlsx(#[from] rust_xlsxwriter::XlsxError),
    #[error("csv: {0}")]
    Csv(#[from] csv::Error),
    #[error("csv: {0}")]
    CsvFlush(String),
}

/// Column titles, in order.
pub const COLUMNS: [&str; 16] = [
    "ID",
    "Name",
    "Description",
    "Status",
    "Network type",
    "VPC",
    "Subnet",
    "IP version",
    "Address",
    "Bound ports",
    "Bound VMs",
    "Master port",
    "Master host",
    "Project",
    "Created at",
    "EIP",
];

fn row(v: &Havip) -> [String; 16] {
    let join =
        |f: fn(&crate::model::Binding) -> &str| v.ports.iter().map(f).collect::<Vec<_>>().join(" ");
    [
        v.id.clone(),
        v.name.clone(),
        v.description.clone(),
        v.status.as_str().to_string(),
        "intranet".to_string(),
        v.vpc.clone(),
        v.subnet.clone(),
        v.ip_version.as_str().to_string(),
        v.address.to_string(),
        join(|b| b.port.as_str()),
        join(|b| b.vm.as_str()),
        v.master
            .as_ref()
            .map(|m| m.port.clone())
            .unwrap_or_default(),
        v.master
            .as_ref()
            .and_then(|m| m.host.clone())
            .unwrap_or_default(),
        v.project.clone(),
        v.created_at.to_rfc3339(),
        v.eip
            .as_ref()
            .map(|e| e.address.to_string())
            .unwrap_or_default(),
    ]
}

pub fn to_xlsx(vips: &[Havip]) -> Result<Vec<u8>, ExportError> {
    let mut book = rust_xlsxwriter::Workbook::new();
    let sheet = book.add_worksheet();
    sheet.set_name("HAVIP")?;
    let bold = rust_xlsxwriter::Format::new().set_bold();
    for (c, title) in COLUMNS.iter().enumerate() {
        sheet.write_string_with_format(0, c as u16, *title, &bold)?;
    }
    for (r, v) in vips.iter().enumerate() {
        for (c, cell) in row(v).iter().enumerate() {
            sheet.write_string(r as u32 + 1, c as u16, cell)?;
        }
    }
    sheet.autofit();
    Ok(book.save_to_buffer()?)
}

/// A CSV cell that a spreadsheet will not run as a formula: one that
/// begins with `=`, `+`, `-`, `@`, a tab or a carriage return gets a
/// leading `'` (OWASP's advice on CSV injection). The xlsx export writes
/// strings as strings and needs none.
pub fn neutralise(cell: &str) -> std::borrow::Cow<'_, str> {
    match cell.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') => format!("'{cell}").into(),
        _ => cell.into(),
    }
}

pub fn to_csv(vips: &[Havip]) -> Result<Vec<u8>, ExportError> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(COLUMNS)?;
    for v in vips {
        w.write_record(row(v).iter().map(|c| neutralise(c).into_owned()))?;
    }
    w.into_inner()
        .map_err(|e| ExportError::CsvFlush(e.error().to_string()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn formulas_are_neutralised() {
        for (cell, want) in [
            ("=HYPERLINK(\"http://x\")", "'=HYPERLINK(\"http://x\")"),
            ("+1+1", "'+1+1"),
            ("-2", "'-2"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\tx", "'\tx"),
            ("\rx", "'\rx"),
            ("web-vip", "web-vip"),
            ("", ""),
        ] {
            assert_eq!(super::neutralise(cell), want, "{cell:?}");
        }
    }
}
