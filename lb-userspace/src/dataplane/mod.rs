//! The only code that loads the XDP program and writes its maps. Everything above it speaks in
//! services and backends; this module speaks in map entries.

mod adopt;
mod attach;
mod banks;
mod bpffs;
mod clock;
mod counters;
mod filter;
mod grace;
mod identity;
mod keep;
pub mod layout;
mod live;
mod lookup_memory;
mod mapped;
mod maps;
mod nat_replies;
mod pins;
mod service_banks;
mod session_table;

pub use attach::{XdpModeArg, ifindex};
pub use bpffs::{BPFFS, is_bpffs};
pub use counters::Counters;
pub use session_table::{SessionCounts, SessionReader};
pub use layout::Layout;
pub use pins::{DEFAULT_INSTANCE, Detached, Found, Instance, LINK_PIN_PREFIX, PIN_ROOT, PROGRAM_PIN_PREFIX, PinDir, PinError, detach_instance};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, DevMapHash, HashMap, MapData, PerCpuArray},
    programs::Xdp,
};
use lb_common::{Backend, Endpoint, NatReplyVips, NewSessionQuota, ServiceEntry, ServiceKey, TrafficCounters};

/// The compiled XDP object (built by build.rs).
pub static XDP_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/lb-xdp"));

/// Name of the XDP entry point in the object.
pub const PROGRAM: &str = "lb_xdp";

/// Name of the XDP_PASS program in the same object, for the far end of a veth in tests
/// (native XDP_TX into a veth needs an XDP program on the peer).
pub const PASS_PROGRAM: &str = "lb_pass";

#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    #[error("loading the XDP object failed: {0} (run as root; the kernel needs BPF and BTF support)")]
    Load(#[source] aya::EbpfError),
    #[error("the kernel refused the XDP program: {0}")]
    Verify(#[source] aya::programs::ProgramError),
    #[error("cannot tell the kernel's tick length, which the XDP program's clock counts in: {0}")]
    Clock(#[source] std::io::Error),
    #[error("map {name} is missing or has the wrong type: {detail}")]
    Map { name: &'static str, detail: String },
    #[error("writing map {name} failed: {source}")]
    Write {
        name: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
    #[error("map {name} is full: {detail}")]
    Full { name: &'static str, detail: String },
    #[error(
        "a session table of {0} records cannot be made: the capacity must be a power of two from {min} to {max}",
        min = lb_common::MIN_SESSION_CAPACITY,
        max = lb_common::MAX_SESSION_CAPACITY
    )]
    SessionCapacity(u32),
    #[error("{0}")]
    Attach(String),
    #[error(transparent)]
    Pins(#[from] PinError),
}

/// What `Dataplane::load_with` makes: where to pin, how large the session table is.
pub struct LoadOptions {
    /// Pin every map here as it is created, or adopt the maps pinned there (`PinDir::adopting`),
    /// and the program and links at attach (`lb run`). None: nothing is pinned.
    pub pins: Option<PinDir>,
    /// Session records SESSIONS holds (`[sessions] capacity`; a power of two).
    pub session_capacity: u32,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions { pins: None, session_capacity: lb_common::DEFAULT_SESSION_CAPACITY }
    }
}

/// A loaded (not yet attached) XDP program and typed handles to all of its maps.
pub struct Dataplane {
    ebpf: Ebpf,
    services: HashMap<MapData, ServiceKey, ServiceEntry>,
    service_banks: service_banks::ServiceBanksMemory,
    service_filter: filter::KeyBitmap,
    lookup: lookup_memory::LookupMemory,
    /// Banks that were live, and the grace periods that make them safe to rewrite.
    banks: banks::Banks,
    grace: grace::Grace,
    /// Epoch when a SERVICES element was last released (see `quiesce_services`).
    services_freed: Option<grace::Epoch>,
    in_service: Array<MapData, u32>,
    backends: Array<MapData, Backend>,
    new_session_quotas: Array<MapData, NewSessionQuota>,
    sessions: session_table::SessionTable,
    nat_reply_map: HashMap<MapData, Endpoint, NatReplyVips>,
    nat_reply_filter: filter::KeyBitmap,
    nat_replies: nat_replies::NatReplies,
    egress: DevMapHash<MapData>,
    service_stats: PerCpuArray<MapData, TrafficCounters>,
    backend_stats: PerCpuArray<MapData, TrafficCounters>,
    outcomes: PerCpuArray<MapData, u64>,
    events: PerCpuArray<MapData, u64>,
    attached: Vec<attach::Attachment>,
    /// Where the maps and the program are pinned (`lb run`); None when loaded unpinned.
    pins: Option<PinDir>,
    /// The maps' layout and its version (the pins' stamp).
    layout: Layout,
    /// The pinned program, kept because it is exactly this lb's (see `keep`); None: the
    /// object's program, loaded by this start.
    kept: Option<Xdp>,
    /// What this lb's program is made of, recorded beside the program it pins.
    identity: identity::ProgramIdentity,
}

/// The pinned program of an adopted directory, if it is exactly the one this lb would load;
/// None (said why) means loading it.
fn keep_pinned_program(pins: &PinDir, identity: identity::ProgramIdentity, layout: &Layout) -> Option<Xdp> {
    let pin = pins.program_path();
    match keep::pinned_program_if_identical(pins.path(), &pin, identity, layout.map_names()) {
        Ok(program) => {
            let id = program.info().map(|i| i.id()).unwrap_or_default();
            tracing::info!(program_id = id, identity = %identity, "kept the running XDP program (identical): not loaded again, the pinned links keep running it");
            Some(program)
        }
        Err(why @ (keep::NotKept::Unrecorded | keep::NotKept::Different)) => {
            tracing::info!(identity = %identity, "loading the XDP program: {why}; it replaces the pinned one on each link");
            None
        }
        Err(why) => {
            tracing::warn!(identity = %identity, "loading the XDP program: {why}; it replaces the pinned one on each link");
            None
        }
    }
}

impl Dataplane {
    /// Loads the object and the program into the kernel (the verifier runs here), unpinned,
    /// with the default session table.
    pub fn load() -> Result<Self, DataplaneError> {
        Self::load_with(LoadOptions::default())
    }

    /// `load` as `options` say.
    pub fn load_with(options: LoadOptions) -> Result<Self, DataplaneError> {
        let LoadOptions { pins, session_capacity } = options;
        let capacity_ok = session_capacity.is_power_of_two()
            && (lb_common::MIN_SESSION_CAPACITY..=lb_common::MAX_SESSION_CAPACITY).contains(&session_capacity);
        if !capacity_ok {
            return Err(DataplaneError::SessionCapacity(session_capacity));
        }
        let buckets = lb_common::session_buckets(session_capacity);
        let ns_per_jiffy = clock::ns_per_jiffy().map_err(DataplaneError::Clock)?;
        let layout = Layout::of_object(buckets)?;
        let mask = buckets - 1;
        let mut loader = EbpfLoader::new();
        loader
            .override_global("NS_PER_JIFFY", &ns_per_jiffy, true)
            .map_max_entries("SESSIONS", buckets)
            .override_global("SESSION_BUCKET_MASK", &mask, true);
        // Each map is opened from its pin when there is one (adopted: same map, contents and
        // all), else created and pinned there.
        if let Some(pins) = &pins {
            for name in layout.map_names() {
                loader.map_pin_path(name, pins.path().join(name));
            }
        }
        let mut ebpf = loader.load(XDP_OBJECT).map_err(DataplaneError::Load)?;
        if let Some(pins) = &pins {
            let how = if pins.adopting() { "adopted the pinned maps" } else { "pinned the maps" };
            tracing::info!(path = %pins.path().display(), maps = layout.map_names().count(), layout = layout.version(), "{how}");
        }
        let identity = identity::ProgramIdentity::of(XDP_OBJECT, ns_per_jiffy, mask);
        let kept = pins.as_ref().filter(|p| p.adopting()).and_then(|p| keep_pinned_program(p, identity, &layout));
        let program: &mut Xdp = ebpf
            .program_mut(PROGRAM)
            .ok_or_else(|| DataplaneError::Map { name: "lb_xdp", detail: "program not in object".into() })?
            .try_into()
            .map_err(DataplaneError::Verify)?;
        if kept.is_none() {
            program.load().map_err(DataplaneError::Verify)?;
        }
        let mut dp = Dataplane {
            services: maps::take(&mut ebpf, "SERVICES")?,
            service_banks: service_banks::ServiceBanksMemory::new(maps::take_map(&mut ebpf, "SERVICE_BANKS")?)?,
            service_filter: filter::KeyBitmap::new("SERVICE_FILTER", maps::take(&mut ebpf, "SERVICE_FILTER")?),
            lookup: lookup_memory::LookupMemory::new(maps::take_map(&mut ebpf, "LOOKUP")?)?,
            banks: banks::Banks::default(),
            grace: grace::Grace::new()?,
            services_freed: None,
            in_service: maps::take(&mut ebpf, "IN_SERVICE")?,
            backends: maps::take(&mut ebpf, "BACKENDS")?,
            new_session_quotas: maps::take(&mut ebpf, "NEW_SESSION_QUOTAS")?,
            sessions: session_table::SessionTable::new(maps::take_map(&mut ebpf, "SESSIONS")?, buckets)?,
            nat_reply_map: maps::take(&mut ebpf, "NAT_REPLIES")?,
            nat_reply_filter: filter::KeyBitmap::new("NAT_REPLY_FILTER", maps::take(&mut ebpf, "NAT_REPLY_FILTER")?),
            nat_replies: nat_replies::NatReplies::default(),
            egress: maps::take(&mut ebpf, "EGRESS")?,
            service_stats: maps::take(&mut ebpf, "SERVICE_STATS")?,
            backend_stats: maps::take(&mut ebpf, "BACKEND_STATS")?,
            outcomes: maps::take(&mut ebpf, "PACKET_OUTCOMES")?,
            events: maps::take(&mut ebpf, "PACKET_EVENTS")?,
            ebpf,
            attached: Vec::new(),
            pins,
            layout,
            kept,
            identity,
        };
        if dp.pins.as_ref().is_some_and(PinDir::adopting) {
            dp.read_back()?;
        }
        Ok(dp)
    }

    /// Session records the loaded SESSIONS holds.
    pub fn session_capacity(&self) -> u32 {
        self.sessions.buckets() * lb_common::SESSION_WAYS as u32
    }

    /// The pin directory, if the maps are pinned.
    pub fn pins(&self) -> Option<&PinDir> {
        self.pins.as_ref()
    }

    /// Whether the maps were adopted from an earlier lb's pins.
    pub fn adopted(&self) -> bool {
        self.pins.as_ref().is_some_and(PinDir::adopting)
    }

    /// The layout version of the maps.
    pub fn layout_version(&self) -> &str {
        self.layout.version()
    }

    /// The start is complete: the pins (stamped, if this start made them) outlive lb.
    pub fn commit_pins(&mut self) -> Result<(), DataplaneError> {
        if let Some(pins) = &mut self.pins {
            pins.commit(&self.layout)?;
        }
        Ok(())
    }

    /// Detaches the program from every interface and removes every pin and the directory
    /// (`lb run --detach-on-exit`, and a start that fails before `commit_pins`).
    pub fn detach_and_unpin(&mut self) {
        self.detach_all();
        if let Some(mut pins) = self.pins.take() {
            match pins.remove() {
                Ok(()) => tracing::info!(path = %pins.path().display(), "removed the pins"),
                Err(e) => tracing::warn!(path = %pins.path().display(), "removing the pins failed: {e}"),
            }
        }
    }

    /// The XDP program: the one this start loaded, or the pinned one it kept (for attaching,
    /// and BPF_PROG_TEST_RUN in tests and benchmarks).
    pub fn program(&mut self) -> &mut Xdp {
        match &mut self.kept {
            Some(kept) => kept,
            None => self.ebpf.program_mut(PROGRAM).and_then(|p| p.try_into().ok()).expect("loaded in Dataplane::load"),
        }
    }

    /// Whether this start kept the running (pinned) program instead of loading its own.
    pub fn program_kept(&self) -> bool {
        self.kept.is_some()
    }

    /// Waits for one RCU grace period: every program run that started before the call has
    /// finished when it returns (the bench times it; bank writes call it when they need it).
    pub fn wait_for_readers(&mut self) -> Result<(), DataplaneError> {
        self.grace.wait()
    }

    /// Grace periods waited for since load, and the total time spent waiting.
    pub fn grace_waits(&self) -> (u64, std::time::Duration) {
        self.grace.stats()
    }

    /// The whole object, for the benchmark harness's own programs and maps.
    pub fn ebpf_mut(&mut self) -> &mut Ebpf {
        &mut self.ebpf
    }
}
