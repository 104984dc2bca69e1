//! Make before break: when replicas move between units (evacuation, failback), the units that give
//! replicas away keep them until the units that take them run them ready (DESIGN section 8).

/// One unit during a move.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HoldInput {
    /// Replicas the plan gives the unit now.
    pub planned: i32,
    /// Replicas the unit's slice asks for today (`None`: no slice yet).
    pub sent: Option<i32>,
    /// Ready pods in the unit's latest fresh report (`None`: unknown).
    pub ready: Option<i32>,
    /// The unit was evacuated with `--force`: its cluster is gone, do not wait for it.
    pub forced_away: bool,
}

/// The replicas each unit's slice asks for while a move is under way, and whether the new capacity
/// is in place (then the move is over and every unit gets its planned replicas).
pub fn hold(units: &[HoldInput]) -> (Vec<i32>, bool) {
    let capacity_ready = units
        .iter()
        .filter(|u| !u.forced_away && u.planned > 0)
        .all(|u| u.ready.is_some_and(|ready| ready >= u.planned));
    let replicas = units
        .iter()
        .map(|u| match u.sent {
            Some(sent) if sent > u.planned && !u.forced_away && !capacity_ready => sent,
            _ => u.planned,
        })
        .collect();
    (replicas, capacity_ready)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(planned: i32, sent: i32, ready: Option<i32>) -> HoldInput {
        HoldInput {
            planned,
            sent: Some(sent),
            ready,
            forced_away: false,
        }
    }

    #[test]
    fn the_evacuated_unit_keeps_its_pods_until_survivors_are_ready() {
        // a is evacuated (3 -> 0); b takes them (3 -> 6) but runs only 4 ready so far.
        let units = [
            unit(0, 3, Some(3)),
            unit(6, 6, Some(4)),
            unit(2, 2, Some(2)),
        ];
        assert_eq!(hold(&units), (vec![3, 6, 2], false));
        let units = [
            unit(0, 3, Some(3)),
            unit(6, 6, Some(6)),
            unit(2, 2, Some(2)),
        ];
        assert_eq!(hold(&units), (vec![0, 6, 2], true));
    }

    #[test]
    fn a_forced_evacuation_does_not_wait() {
        let mut gone = unit(0, 3, None);
        gone.forced_away = true;
        assert_eq!(hold(&[gone, unit(6, 6, Some(1))]), (vec![0, 6], false));
    }

    #[test]
    fn unknown_health_is_not_ready() {
        assert_eq!(
            hold(&[unit(0, 3, Some(3)), unit(6, 3, None)]),
            (vec![3, 6], false)
        );
    }

    #[test]
    fn failback_scales_the_returning_unit_first() {
        // The returning unit goes 0 -> 3; the survivor (6) holds until it is ready.
        let units = [unit(3, 0, Some(0)), unit(3, 6, Some(6))];
        assert_eq!(hold(&units), (vec![3, 6], false));
        let units = [unit(3, 3, Some(3)), unit(3, 6, Some(6))];
        assert_eq!(hold(&units), (vec![3, 3], true));
    }
}
