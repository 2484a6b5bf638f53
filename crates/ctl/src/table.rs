//! Column-aligned text tables, laid out as istioctl's (Go `tabwriter`): every column as
//! wide as its widest cell plus the padding (five spaces unless told), the last one
//! unpadded. Like `tabwriter`, a row whose last cell is empty keeps the padding of the
//! cell before it, so istioctl's goldens compare byte for byte.

use std::fmt::Write;

/// A table of rows of cells; the first row is the header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    rows: Vec<Vec<String>>,
    padding: usize,
}

impl Table {
    /// A table with this header row, its columns five spaces apart.
    pub fn new<S: Into<String>>(header: impl IntoIterator<Item = S>) -> Self {
        Self {
            rows: vec![header.into_iter().map(Into::into).collect()],
            padding: 5,
        }
    }

    /// The same table with columns `padding` spaces apart (istioctl's listener table
    /// uses one).
    pub fn with_padding(mut self, padding: usize) -> Self {
        self.padding = padding;
        self
    }

    /// Appends a row.
    pub fn row<S: Into<String>>(&mut self, cells: impl IntoIterator<Item = S>) {
        self.rows.push(cells.into_iter().map(Into::into).collect());
    }

    /// The table as text, one line per row, each ending in a newline.
    pub fn render(&self) -> String {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|c| {
                self.rows
                    .iter()
                    .filter_map(|r| r.get(c))
                    .map(|cell| cell.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for row in &self.rows {
            let mut line = String::new();
            for (c, cell) in row.iter().enumerate() {
                if c + 1 == row.len() {
                    line.push_str(cell);
                } else {
                    let _ = write!(line, "{cell:<width$}", width = widths[c] + self.padding);
                }
            }
            out.push_str(&line);
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lays_out_like_istioctl() {
        let mut t = Table::new(["NAME", "CLUSTER", "ISTIOD", "VERSION", "SUBSCRIBED TYPES"]);
        t.row([
            "proxy1",
            "cluster1",
            "istiod1",
            "1.20",
            "5 (CDS,LDS,EDS,RDS,ECDS)",
        ]);
        t.row(["proxy4", "cluster4", "istiod4", "1.20", "0"]);
        assert_eq!(
            t.render(),
            "NAME       CLUSTER      ISTIOD      VERSION     SUBSCRIBED TYPES\n\
             proxy1     cluster1     istiod1     1.20        5 (CDS,LDS,EDS,RDS,ECDS)\n\
             proxy4     cluster4     istiod4     1.20        0\n"
        );
    }

    #[test]
    fn an_empty_last_cell_keeps_the_padding_before_it_like_tabwriter() {
        let mut t = Table::new(["NAME", "MATCH", "VIRTUAL SERVICE"]).with_padding(1);
        t.row(["backend", "/healthz/ready*", ""]);
        assert_eq!(
            t.render(),
            "NAME    MATCH           VIRTUAL SERVICE\nbackend /healthz/ready* \n"
        );
    }
}
