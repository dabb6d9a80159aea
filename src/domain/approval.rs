//! Approval matching: is every approval group satisfied, counting each approval for
//! one group only? This is a bipartite matching between approvers and group "seats"
//! (k seats per group). Maximum matching makes the order of approvals irrelevant, and
//! the two-person rule holds: someone in both `dba-team` and `security` fills one seat,
//! never two. An admin may fill one seat of any group (never two).

use super::Actor;
use std::collections::BTreeMap;

/// Outcome of matching: who counts for which group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tally {
    /// Group name → usernames whose approval counts for it (at most `required`).
    pub counted: BTreeMap<String, Vec<String>>,
    pub required: u32,
    pub satisfied: bool,
}

/// Matches `approvers` (with their current groups and admin flag) against `groups`,
/// each needing `required` approvals.
pub fn tally(groups: &[String], required: u32, approvers: &[Actor]) -> Tally {
    let seats: Vec<&String> = groups.iter().flat_map(|g| std::iter::repeat_n(g, required as usize)).collect();
    let can_fill = |a: &Actor, group: &String| a.admin || a.groups.contains(group);
    // seat_holder[s] = index of the approver filling seat s.
    let mut seat_holder: Vec<Option<usize>> = vec![None; seats.len()];
    for approver in 0..approvers.len() {
        let mut visited = vec![false; seats.len()];
        augment(approver, approvers, &seats, &can_fill, &mut seat_holder, &mut visited);
    }
    let mut counted: BTreeMap<String, Vec<String>> = groups.iter().map(|g| (g.clone(), Vec::new())).collect();
    for (seat, holder) in seat_holder.iter().enumerate() {
        if let (Some(a), Some(list)) = (holder, counted.get_mut(seats[seat])) {
            list.push(approvers[*a].username.clone());
        }
    }
    for list in counted.values_mut() {
        list.sort();
    }
    let satisfied = seat_holder.iter().all(Option::is_some);
    Tally { counted, required, satisfied }
}

/// Kuhn's augmenting path: tries to seat `approver`, moving earlier approvers to other
/// seats they may fill. Sizes are tiny (a few groups, a few approvers).
fn augment(
    approver: usize,
    approvers: &[Actor],
    seats: &[&String],
    can_fill: &impl Fn(&Actor, &String) -> bool,
    seat_holder: &mut [Option<usize>],
    visited: &mut [bool],
) -> bool {
    for seat in 0..seats.len() {
        if visited[seat] || !can_fill(&approvers[approver], seats[seat]) {
            continue;
        }
        visited[seat] = true;
        let free = match seat_holder[seat] {
            None => true,
            Some(other) => augment(other, approvers, seats, can_fill, seat_holder, visited),
        };
        if free {
            seat_holder[seat] = Some(approver);
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn person(name: &str, groups: &[&str]) -> Actor {
        Actor { username: name.into(), admin: false, groups: groups.iter().map(|g| g.to_string()).collect() }
    }

    fn admin(name: &str) -> Actor {
        Actor { admin: true, ..person(name, &[]) }
    }

    fn groups(names: &[&str]) -> Vec<String> {
        names.iter().map(|g| g.to_string()).collect()
    }

    #[test]
    fn one_person_counts_for_one_group() {
        let both = person("carol", &["dba", "security"]);
        let t = tally(&groups(&["dba", "security"]), 1, std::slice::from_ref(&both));
        assert!(!t.satisfied);
        let t = tally(&groups(&["dba", "security"]), 1, &[both, person("dave", &["dba"])]);
        assert!(t.satisfied);
        assert_eq!(t.counted["security"], vec!["carol"]);
        assert_eq!(t.counted["dba"], vec!["dave"]);
    }

    #[test]
    fn order_of_approvals_never_matters() {
        // A greedy count would seat carol in dba first and then fail on dave.
        let carol = person("carol", &["dba", "security"]);
        let dave = person("dave", &["dba"]);
        let g = groups(&["dba", "security"]);
        assert!(tally(&g, 1, &[carol.clone(), dave.clone()]).satisfied);
        assert!(tally(&g, 1, &[dave, carol]).satisfied);
    }

    #[test]
    fn min_approvals_applies_per_group() {
        let g = groups(&["dba", "security"]);
        let people = [person("a", &["dba"]), person("b", &["dba"]), person("c", &["security"])];
        assert!(!tally(&g, 2, &people).satisfied);
        let more = [people[0].clone(), people[1].clone(), people[2].clone(), person("d", &["security"])];
        assert!(tally(&g, 2, &more).satisfied);
    }

    #[test]
    fn more_approvals_than_needed_still_satisfy() {
        let g = groups(&["dba"]);
        let people = [person("a", &["dba"]), person("b", &["dba"]), person("c", &["dba"])];
        let t = tally(&g, 2, &people);
        assert!(t.satisfied);
        assert_eq!(t.counted["dba"].len(), 2);
    }

    #[test]
    fn an_admin_fills_one_seat_of_any_group_never_two() {
        let g = groups(&["dba", "security"]);
        assert!(!tally(&g, 1, &[admin("root")]).satisfied);
        assert!(tally(&g, 1, &[admin("root"), person("s", &["security"])]).satisfied);
        assert!(tally(&g, 1, &[admin("root"), admin("other")]).satisfied);
    }

    #[test]
    fn approvals_from_outside_the_groups_count_for_nothing() {
        let t = tally(&groups(&["dba"]), 1, &[person("x", &["sales"])]);
        assert!(!t.satisfied);
        assert!(t.counted["dba"].is_empty());
    }

    #[test]
    fn no_groups_means_nothing_to_satisfy() {
        assert!(tally(&[], 1, &[]).satisfied);
    }
}
