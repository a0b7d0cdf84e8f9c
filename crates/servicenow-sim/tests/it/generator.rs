//! Generated data is a function of the seed and counts only.

use crate::common;

use common::{get, small_config, start};
use nowstream_servicenow_sim::{GeneratorConfig, SimConfig};

fn config(seed: u64) -> SimConfig {
    let base = small_config();
    SimConfig {
        data: GeneratorConfig { seed, ..base.data },
        ..base
    }
}

#[tokio::test]
async fn same_seed_serves_the_same_data_and_another_seed_does_not() {
    let a = start(config(11)).await;
    let b = start(config(11)).await;
    let c = start(config(12)).await;
    for table in [
        "incident",
        "change_request",
        "sys_user",
        "sys_choice",
        "sys_dictionary",
        "sys_user_has_role",
    ] {
        assert_eq!(
            a.snapshot(table).unwrap(),
            b.snapshot(table).unwrap(),
            "{table}"
        );
    }
    assert_ne!(
        a.snapshot("incident").unwrap(),
        c.snapshot("incident").unwrap()
    );
    // Links embed each simulator's own port, so compare without them.
    let query =
        "incident?sysparm_limit=20&sysparm_display_value=all&sysparm_exclude_reference_link=true";
    let (page_a, page_b) = (get(&a, query).await.body, get(&b, query).await.body);
    assert!(
        page_a["result"] == page_b["result"],
        "rendered JSON matches too"
    );
}

#[tokio::test]
async fn counts_are_honoured() {
    let sim = start(config(3)).await;
    assert_eq!(sim.snapshot("incident").unwrap().len(), 120);
    assert_eq!(sim.snapshot("change_request").unwrap().len(), 30);
    // 15 generated users plus the two configured accounts.
    assert_eq!(sim.snapshot("sys_user").unwrap().len(), 17);
}
