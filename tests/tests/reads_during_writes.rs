//! Reads never wait behind a long write (issue #23, item 3): with the worker
//! frozen by the test-only stall hook, a write that removes a port waits (up to
//! its grace period) for the worker to let go of the port's queues, holding the
//! dataplane; meanwhile `GetState`, `Health`, `GetStats` and `ListPorts` answer
//! at once, the last two from the ports as last seen.

use std::time::{Duration, Instant};

use control::api;
use system_tests::*;

fn config(dir: &TempDir) -> String {
    let ports = "[[port]]\nname = \"a\"\nprofile = \"null\"\n\
                 [[port]]\nname = \"b\"\nprofile = \"null\"\n";
    control_config(
        dir,
        &[worker_core()],
        &format!("{}{ports}", allowed_dirs(dir)),
    )
}

#[test]
fn reads_answer_while_a_write_waits_on_a_stuck_worker() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let dir = TempDir::new("reads");
    let stall = dir.join("stall");
    let vsw = Vswitchd::start_env(
        &dir,
        &config(&dir),
        None,
        &[("VSWITCH_TEST_STALL_WORKER_FILE", stall.as_path())],
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let c = rt.block_on(connect(&dir.join("ctl.sock")));
    // Seen once before the write: the view the reads fall back on.
    let before = rt
        .block_on(c.clone().list_ports(api::ListPortsRequest {}))
        .unwrap();
    assert_eq!(before.into_inner().ports.len(), 2);

    std::fs::write(&stall, "").unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let mut writer = c.clone();
    let write = rt.spawn(async move {
        let t = Instant::now();
        let r = writer
            .write(api::WriteRequest {
                ops: vec![api::Op {
                    op: Some(api::op::Op::DelPort("b".into())),
                }],
                expected_generation: 0,
            })
            .await;
        (r, t.elapsed())
    });
    // Let the write take the dataplane and start waiting on the worker.
    rt.block_on(async { tokio::time::sleep(Duration::from_millis(500)).await });
    let mut reader = c.clone();
    let t = Instant::now();
    let stats = rt
        .block_on(reader.get_stats(api::GetStatsRequest {}))
        .unwrap()
        .into_inner();
    let ports = rt
        .block_on(reader.list_ports(api::ListPortsRequest {}))
        .unwrap()
        .into_inner();
    let state = rt
        .block_on(reader.get_state(api::GetStateRequest {}))
        .unwrap()
        .into_inner();
    let health = rt
        .block_on(reader.health(api::HealthRequest {}))
        .unwrap()
        .into_inner();
    let reads = t.elapsed();
    assert!(
        !write.is_finished(),
        "the write did not wait on the stuck worker"
    );
    std::fs::remove_file(&stall).unwrap();
    let (written, took) = rt.block_on(write).unwrap();
    eprintln!("four reads in {reads:?} while the write took {took:?}: {written:?}");
    // Figures, not thresholds on speed: the reads ended while the write was
    // still waiting, which is what is asserted above and here.
    assert!(reads < took, "reads {reads:?}, write {took:?}");
    assert_eq!(stats.ports.len(), 2, "{stats:?}");
    assert_eq!(ports.ports.len(), 2);
    assert_eq!(state.generation, 1);
    assert!(health.generation >= 1);
    vsw.stop();
}
