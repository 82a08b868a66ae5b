//! The runtime as a future, awaited next to the application's own async work.

use ss_core::policy::{Policy, StreamType};
use ss_core::{EngineConfig, Handler, Host, RetryPolicy, SsRet, StreamCtx, StreamState};
use ss_smol::Runtime;
use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

struct Record(Rc<RefCell<Vec<StreamState>>>);
impl Handler for Record {
    fn state(&mut self, _ctx: &mut StreamCtx<'_>, s: StreamState, _a: u32) -> SsRet {
        self.0.borrow_mut().push(s);
        SsRet::Ok
    }
}

#[test]
fn run_until_async_composes_with_other_futures() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let policy = Policy {
        retry: vec![RetryPolicy {
            name: "once".into(),
            backoff_ms: vec![20],
            conceal: 1,
            jitter_pc: Some(0),
            svalidping_s: None,
            svalidhup_s: None,
        }],
        streamtypes: vec![StreamType {
            name: "client".into(),
            endpoint: Some("127.0.0.1".into()),
            port,
            retry: Some("once".into()),
            ..Default::default()
        }],
        ..Default::default()
    };
    let mut rt = Runtime::new(Host::new(ss_core::Engine::new(
        policy,
        EngineConfig::default(),
    )));
    let states = Rc::new(RefCell::new(vec![]));
    let now = rt.now();
    let c = rt
        .host()
        .create(now, "client", Box::new(Record(states.clone())))
        .unwrap();
    rt.host().engine.client_connect(now, c).unwrap();
    let s = states.clone();
    let (done, ticks) = smol::block_on(async {
        let ticker = async {
            let mut n = 0;
            for _ in 0..3 {
                smol::Timer::after(Duration::from_millis(1)).await;
                n += 1;
            }
            n
        };
        let mut done = |_: &mut Host| s.borrow().contains(&StreamState::AllRetriesFailed);
        let run = rt.run_until_async(Duration::from_secs(5), &mut done);
        futures_lite::future::zip(run, ticker).await
    });
    assert!(done, "{:?}", states.borrow());
    assert_eq!(ticks, 3);
    let unreachable = states
        .borrow()
        .iter()
        .filter(|s| **s == StreamState::Unreachable)
        .count();
    assert_eq!(unreachable, 2, "{:?}", states.borrow());
}
