//! A readable grid of a plan: one row per unit, one column per group.

use super::Plan;
use std::fmt::Write as _;

/// Renders the plan as a table. Each group cell reads `+size=updated`.
pub fn render_table(plan: &Plan) -> String {
    let mut header = vec![
        "UNIT".to_owned(),
        "REGION".to_owned(),
        "CLUSTER".to_owned(),
        "REPLICAS".to_owned(),
    ];
    let blue_green = plan.strategy == crate::resources::StrategyType::BlueGreen;
    if blue_green {
        header.push("PEAK".to_owned());
    }
    header.extend(plan.batches.iter().map(|g| format!("G{}", g.index)));
    let mut rows = vec![header];
    for (i, unit) in plan.units.iter().enumerate() {
        let mut row = vec![
            unit.unit.to_string(),
            unit.region.to_string(),
            unit.cluster.to_string(),
            if unit.evacuated {
                format!("{} (evacuated)", unit.replicas)
            } else {
                unit.replicas.to_string()
            },
        ];
        if blue_green {
            row.push(unit.peak.to_string());
        }
        row.extend(plan.batches.iter().map(|g| {
            g.units
                .get(i)
                .map_or_else(String::new, |s| format!("+{}={}", s.size, s.updated))
        }));
        rows.push(row);
    }
    let columns = rows.first().map_or(0, Vec::len);
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            rows.iter()
                .map(|r| r.get(c).map_or(0, String::len))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = format!(
        "{}/{}: {} replicas in {} units, {} groups\n",
        plan.namespace,
        plan.name,
        plan.replicas,
        plan.units.len(),
        plan.batches.len()
    );
    for row in &rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    // While a pipeline drives the deployment, which stage each group belongs to.
    let stages: Vec<String> = plan
        .batches
        .iter()
        .filter_map(|g| {
            g.stage
                .as_ref()
                .map(|stage| format!("G{} {stage}", g.index))
        })
        .collect();
    if !stages.is_empty() {
        let _ = writeln!(out, "pipeline stages: {}", stages.join(", "));
    }
    if blue_green {
        let _ = writeln!(
            out,
            "blue-green: each unit switches whole in its group (+size=updated); PEAK counts the \
             old pods kept beside the new ones"
        );
    }
    for note in &plan.notes {
        let _ = writeln!(out, "note: {note}");
    }
    out
}
