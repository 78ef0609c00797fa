//! A typed cache of one kind of object, fed by a kube-runtime watcher: the objects we keep
//! (already converted to our own compact types) keyed by namespace/name, and a staging copy
//! that collects a (re)list and replaces the live objects in one step when the list is complete,
//! so nothing built from the cache ever sees a half-listed kind.
//!
//! kube-runtime's reflector stores were measured against this (`cargo bench --bench
//! rbac_cache`, README "Performance"): they keep every object as the API server sent it, and
//! a rebuild has to convert all of them again, so they cost more memory and more time per change.

use std::collections::BTreeMap;

use futures_util::{Stream, StreamExt};
use kube::{
    Api, Resource, ResourceExt,
    runtime::{WatchStreamExt, watcher},
};
use serde::de::DeserializeOwned;

/// One watch event, with the object already converted.
#[derive(Debug)]
pub enum Event<T> {
    /// A (re)list starts: what follows until `InitDone` is the whole kind.
    Init,
    /// An object was listed, added or changed.
    Put(String, T),
    /// An object was deleted.
    Delete(String),
    /// The (re)list is complete.
    InitDone,
}

/// One kind's objects as its watch last described them.
#[derive(Debug)]
pub struct KindCache<T> {
    live: BTreeMap<String, T>,
    staging: Option<BTreeMap<String, T>>,
    listed: bool,
}

impl<T> Default for KindCache<T> {
    fn default() -> Self {
        KindCache {
            live: BTreeMap::new(),
            staging: None,
            listed: false,
        }
    }
}

impl<T> KindCache<T> {
    /// Applies one event; returns whether the live objects changed.
    pub fn apply(&mut self, event: Event<T>) -> bool {
        match event {
            Event::Init => {
                self.staging = Some(BTreeMap::new());
                false
            }
            Event::InitDone => {
                self.live = self.staging.take().unwrap_or_default();
                self.listed = true;
                true
            }
            Event::Put(key, obj) => {
                let target = self.staging.as_mut().unwrap_or(&mut self.live);
                target.insert(key, obj);
                self.staging.is_none()
            }
            Event::Delete(key) => {
                let target = self.staging.as_mut().unwrap_or(&mut self.live);
                let removed = target.remove(&key).is_some();
                removed && self.staging.is_none()
            }
        }
    }

    /// Whether a first complete list has arrived.
    pub fn listed(&self) -> bool {
        self.listed
    }

    pub fn len(&self) -> usize {
        self.live.len()
    }

    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }

    pub fn values(&self) -> impl Iterator<Item = &T> {
        self.live.values()
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.live.keys().map(String::as_str)
    }

    pub fn get(&self, key: &str) -> Option<&T> {
        self.live.get(key)
    }
}

/// Resolves `window` after it is called when `dirty`, never otherwise: the arm of a `select!`
/// loop that folds a burst of changes into one rebuild.
pub async fn settle(dirty: bool, window: std::time::Duration) {
    if dirty {
        tokio::time::sleep(window).await
    } else {
        std::future::pending().await
    }
}

/// The cache key of an object: `namespace/name`, or `name` for cluster-scoped objects.
pub fn key_of<K: Resource>(o: &K) -> String {
    match o.namespace() {
        Some(ns) => format!("{ns}/{}", o.name_any()),
        None => o.name_any(),
    }
}

/// Watches `api` (list, then watch with resume, relist and backoff by kube-runtime), converting
/// each object with `convert`. An object `convert` cannot read is removed from the cache (its
/// previous version must not go on granting what its author changed) and reported as `Err`
/// naming it; a watch error is `Err` too; the watch goes on.
pub fn watch<K, T>(
    api: Api<K>,
    config: watcher::Config,
    convert: fn(&K) -> Option<T>,
) -> impl Stream<Item = Result<Event<T>, String>> + Send + 'static
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
    T: Send + 'static,
{
    watcher(api, config).default_backoff().flat_map(move |ev| {
        let out = match ev {
            Ok(watcher::Event::Init) => vec![Ok(Event::Init)],
            Ok(watcher::Event::InitDone) => vec![Ok(Event::InitDone)],
            Ok(watcher::Event::InitApply(o)) | Ok(watcher::Event::Apply(o)) => match convert(&o) {
                Some(obj) => vec![Ok(Event::Put(key_of(&o), obj))],
                None => vec![
                    Ok(Event::Delete(key_of(&o))),
                    Err(format!("cannot read {}; it counts as deleted", key_of(&o))),
                ],
            },
            Ok(watcher::Event::Delete(o)) => vec![Ok(Event::Delete(key_of(&o)))],
            Err(e) => vec![Err(e.to_string())],
        };
        futures_util::stream::iter(out)
    })
}

/// Converts a Kubernetes object to one of our types through its JSON form (Kubernetes' own
/// shape, which our types read).
pub fn via_json<K: serde::Serialize, T: DeserializeOwned>(o: &K) -> Option<T> {
    serde_json::to_value(o)
        .ok()
        .and_then(|v| serde_json::from_value(v).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(k: &str, v: u32) -> Event<u32> {
        Event::Put(k.to_string(), v)
    }

    #[test]
    fn a_relist_replaces_the_live_objects_only_when_complete() {
        let mut c = KindCache::default();
        assert!(!c.apply(Event::Init));
        assert!(!c.apply(put("a", 1)));
        assert!(!c.listed());
        assert!(c.is_empty(), "a half list is not visible");
        assert!(c.apply(Event::InitDone));
        assert!(c.listed());
        assert!(c.apply(put("b", 2)));
        assert_eq!(c.keys().collect::<Vec<_>>(), ["a", "b"]);

        // A relist that no longer has "a": until InitDone the old objects stay.
        c.apply(Event::Init);
        c.apply(put("b", 3));
        assert_eq!(c.get("a"), Some(&1));
        assert_eq!(c.get("b"), Some(&2));
        c.apply(Event::InitDone);
        assert_eq!(c.get("a"), None);
        assert_eq!(c.get("b"), Some(&3));
        assert!(c.listed());
    }

    #[test]
    fn deleting_an_unknown_object_changes_nothing() {
        let mut c = KindCache::default();
        c.apply(Event::Init);
        c.apply(put("a", 1));
        c.apply(Event::InitDone);
        assert!(!c.apply(Event::Delete("zzz".into())));
        assert!(c.apply(Event::Delete("a".into())));
        assert_eq!(c.len(), 0);
    }
}
