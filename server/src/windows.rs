//! Long uploads for the windowable tasks (ASR, lyrics): the recording is cut into windows
//! of at most 30 s at its quiet moments (`uniaudio::long_form`), each window becomes its
//! own engine request (so they run as one batch), and the texts are joined in order once
//! the last window finishes. Windows are encoded one per pass of the engine loop, between
//! steps, and only while no request waits for room: a long upload holds up the sequences
//! already decoding by one window's encoding at a time, and encodes no window before it
//! can run. A group answers its client once: with the joined text, or with the first error
//! (the other windows are then cancelled).

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use uniaudio::{AudioInput, TaskRequest};
use uniaudio_lm::RequestId;

use crate::worker::{Fault, Sink};

pub type GroupId = u64;

struct Group {
    texts: Vec<Option<String>>,
    members: Vec<RequestId>,
}

/// A window waiting to be encoded and submitted.
pub struct PendingWindow {
    pub group: GroupId,
    pub index: usize,
    pub request: TaskRequest,
    pub sink: Sink,
    pub deadline: Option<Instant>,
    /// A test's injected fault (`Fault::WindowError`).
    pub fault: Option<Fault>,
}

#[derive(Default)]
pub struct Groups {
    next: GroupId,
    open: HashMap<GroupId, Group>,
    pending: VecDeque<PendingWindow>,
}

impl Groups {
    /// Cuts `request`'s samples into windows and queues one request per window; how many.
    pub fn plan(&mut self, request: &TaskRequest, samples: &[f32], sink: &Sink, deadline: Option<Instant>, fault: Option<Fault>) -> usize {
        let plan = uniaudio::long_form::windows(samples);
        let group = self.open(plan.len());
        for (index, range) in plan.iter().enumerate() {
            let window = request.with_audio(Some(AudioInput::Samples24k(samples[range.clone()].to_vec())));
            self.pending.push_back(PendingWindow { group, index, request: window, sink: sink.clone(), deadline, fault });
        }
        plan.len()
    }

    /// The next queued window of a group still open (windows of closed groups are dropped).
    pub fn next_pending(&mut self) -> Option<PendingWindow> {
        while let Some(w) = self.pending.pop_front() {
            if self.open.contains_key(&w.group) {
                return Some(w);
            }
        }
        None
    }

    /// Whether windows wait to be submitted.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Closes the groups with queued windows whose client left or whose deadline passed
    /// (their windows are dropped at once): each one's sink and engine requests.
    pub fn sweep(&mut self, now: Instant) -> Vec<(Sink, Vec<RequestId>)> {
        let mut done: Vec<(GroupId, Sink)> = Vec::new();
        for w in &self.pending {
            let abandoned = crate::worker::abandoned_at(&w.sink, w.deadline, now);
            if abandoned && self.open.contains_key(&w.group) && !done.iter().any(|(g, _)| *g == w.group) {
                done.push((w.group, w.sink.clone()));
            }
        }
        let closed: Vec<(Sink, Vec<RequestId>)> = done.into_iter().filter_map(|(g, sink)| Some((sink, self.close(g)?))).collect();
        let open = &self.open;
        self.pending.retain(|w| open.contains_key(&w.group));
        closed
    }

    /// Closes every group, for the engine thread's end: each client's sink, once.
    pub fn close_all(&mut self) -> Vec<Sink> {
        let mut sinks: HashMap<GroupId, Sink> = HashMap::new();
        for w in self.pending.drain(..) {
            sinks.entry(w.group).or_insert(w.sink);
        }
        self.open.clear();
        sinks.into_values().collect()
    }

    /// A new group of `windows` windows.
    pub fn open(&mut self, windows: usize) -> GroupId {
        let id = self.next;
        self.next += 1;
        self.open.insert(id, Group { texts: vec![None; windows], members: Vec::new() });
        id
    }

    /// Records the engine request that runs one of the group's windows.
    pub fn add_member(&mut self, group: GroupId, id: RequestId) {
        if let Some(g) = self.open.get_mut(&group) {
            g.members.push(id);
        }
    }

    /// Records window `index`'s text; the joined text once every window has one (the group
    /// is then closed).
    pub fn complete(&mut self, group: GroupId, index: usize, text: String) -> Option<String> {
        let g = self.open.get_mut(&group)?;
        *g.texts.get_mut(index)? = Some(text);
        if g.texts.iter().any(Option::is_none) {
            return None;
        }
        let g = self.open.remove(&group)?;
        Some(g.texts.into_iter().flatten().fold(String::new(), |a, b| uniaudio::long_form::join(a, &b)))
    }

    /// Closes the group (a window failed, or the client left); its engine requests, for
    /// the caller to cancel, or `None` when it was already closed (answered once only).
    pub fn close(&mut self, group: GroupId) -> Option<Vec<RequestId>> {
        self.open.remove(&group).map(|g| g.members)
    }

    /// Groups still waiting for windows.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.open.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_are_joined_in_window_order_whatever_order_they_finish_in() {
        let mut g = Groups::default();
        let a = g.open(3);
        for id in [10, 11, 12] {
            g.add_member(a, id);
        }
        assert_eq!(g.complete(a, 2, "three".into()), None);
        assert_eq!(g.complete(a, 0, "one".into()), None);
        assert_eq!(g.complete(a, 1, String::new()), Some("one three".into()), "an empty window adds no space");
        assert_eq!(g.len(), 0);
        assert_eq!(g.complete(a, 1, "late".into()), None, "a closed group answers once");
    }

    #[test]
    fn queued_windows_follow_the_plan_and_closing_drops_them() {
        let (sink, _rx) = tokio::sync::mpsc::unbounded_channel();
        let request = TaskRequest {
            task: uniaudio::Task::Asr,
            text: Default::default(),
            audio: None,
            sampling: Default::default(),
            codec: Default::default(),
            prompt_frames: None,
        };
        let mut g = Groups::default();
        // 70 s of tone with quiet gaps at 25 s and 52 s: three windows.
        let rate = 24_000;
        let mut x: Vec<f32> = (0..70 * rate).map(|i| (i as f32 * 0.01).sin() * 0.5).collect();
        for gap in [25 * rate, 52 * rate] {
            x[gap..gap + rate / 10].fill(0.0);
        }
        assert_eq!(g.plan(&request, &x, &sink, None, None), 3);
        let first = g.next_pending().unwrap();
        assert_eq!(first.index, 0);
        let Some(AudioInput::Samples24k(w)) = &first.request.audio else { panic!("no samples") };
        assert_eq!(&x[..w.len()], &w[..]);
        assert!(g.has_pending());
        // A second upload's group stays whole when the first closes.
        g.plan(&request, &x[..rate], &sink, None, None);
        g.close(first.group);
        let next = g.next_pending().unwrap();
        assert_ne!(next.group, first.group, "a closed group's windows are dropped");
        assert_eq!(g.close_all().len(), 0, "nothing left queued");
        g.plan(&request, &x, &sink, None, None);
        g.plan(&request, &x, &sink, None, None);
        assert_eq!(g.close_all().len(), 2, "one sink per group");
        assert!(!g.has_pending() && g.len() == 0);
        // A group whose client left or whose deadline passed is swept with its windows.
        let (gone, rx) = tokio::sync::mpsc::unbounded_channel();
        drop(rx);
        let now = Instant::now();
        let kept = g.plan(&request, &x, &sink, Some(now + std::time::Duration::from_secs(60)), None);
        g.plan(&request, &x, &gone, None, None);
        g.plan(&request, &x, &sink, Some(now), None);
        let swept = g.sweep(now);
        assert_eq!(swept.len(), 2, "the departed client's group and the expired one");
        assert_eq!((g.len(), g.pending.len()), (1, kept));
        assert!(g.sweep(now).is_empty());
    }

    #[test]
    fn a_closed_group_names_its_requests_once() {
        let mut g = Groups::default();
        let (a, b) = (g.open(2), g.open(1));
        g.add_member(a, 1);
        g.add_member(a, 2);
        g.add_member(b, 3);
        assert_eq!(g.complete(a, 0, "x".into()), None);
        assert_eq!(g.close(a), Some(vec![1, 2]));
        assert_eq!(g.close(a), None);
        assert_eq!(g.complete(a, 1, "y".into()), None);
        assert_eq!(g.complete(b, 0, "z".into()), Some("z".into()));
    }
}
