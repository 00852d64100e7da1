//! The real-cluster suite's second half: nsguard installed as it ships, on a real node.
//! The image is the binary `docker build .` compiles (tests/image.sh builds its context)
//! with what the runtime image adds, under the name `manifests/base` renders; the install
//! is README's (`certs/install-manual-certs.sh`: `kubectl apply -k manifests/base`, the
//! Secret, the caBundle); the API server calls the webhooks through their Service
//! (`clientConfig.service`), which kube-proxy routes to the pods. The upgrade and the
//! uninstall run README's own commands, read from it.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::common::control_plane::{ControlPlane, eventually, kube_config, poll, text};
use super::common::node::{self, Node};
use super::common::{kustomize, repo_path};
use super::{
    StatefulSubEnv, metric, namespace_with_stacks, refused_by_the_volume_guard, stack_labels,
};

pub type NodeScenario = fn(&Installed);

pub const SCENARIOS: [(&str, NodeScenario); 9] = [
    (
        "installed_as_pods_it_answers_through_its_service",
        installed_as_pods_it_answers_through_its_service,
    ),
    (
        "ephemeral_volumes_roll_and_the_old_namespace_deletes",
        ephemeral_volumes_roll_and_the_old_namespace_deletes,
    ),
    (
        "one_pod_audits_and_the_other_takes_over_its_lease",
        one_pod_audits_and_the_other_takes_over_its_lease,
    ),
    (
        "a_stopping_pod_fails_readiness_on_both_ports_and_serves_its_metrics",
        a_stopping_pod_fails_readiness_on_both_ports_and_serves_its_metrics,
    ),
    (
        "an_upgrade_under_a_stream_of_reviews_fails_none",
        an_upgrade_under_a_stream_of_reviews_fails_none,
    ),
    (
        "a_certificate_rotation_under_a_stream_of_reviews_fails_none",
        a_certificate_rotation_under_a_stream_of_reviews_fails_none,
    ),
    (
        "a_pod_killed_hard_fails_at_most_its_reviews_in_flight",
        a_pod_killed_hard_fails_at_most_its_reviews_in_flight,
    ),
    (
        "scaled_to_zero_the_placement_policy_still_refuses_a_misplaced_create",
        scaled_to_zero_the_placement_policy_still_refuses_a_misplaced_create,
    ),
    (
        "the_uninstall_leaves_nothing_and_logs_no_error",
        the_uninstall_leaves_nothing_and_logs_no_error,
    ),
];

const NAMESPACE: &str = "nsguard-system";
/// The second tag the upgrade changes the Deployment to (the same binary).
const NEXT_TAG: &str = "0.1.1-e2e";

/// The node with nsguard installed as README says.
pub struct Installed {
    pub node: Node,
    /// The image `manifests/base` renders, and the upgrade's.
    image: String,
    next_image: String,
    /// A copy of what README's commands use (manifests/, the install script).
    repo: PathBuf,
    /// The image's binary, which the install script also runs (`nsguard certs`).
    binary: PathBuf,
}

impl Installed {
    /// The node, the image imported under both names, and README's install.
    pub fn start(kube_node: &Path, assets: &Path) -> Installed {
        let binary = node::image_binary(&repo_path(""));
        let node = Node::start(kube_node, assets);
        // A reader's checkout: what README's commands read and edit (the kustomization's
        // image), copied, so the repository itself is never changed.
        let repo = node.plane.dir.path().join("checkout");
        for (from, to) in [
            ("manifests", "manifests"),
            (
                "certs/install-manual-certs.sh",
                "certs/install-manual-certs.sh",
            ),
        ] {
            std::fs::create_dir_all(repo.join(to).parent().unwrap()).unwrap();
            let status = Command::new("cp")
                .args(["-a"])
                .arg(repo_path(from))
                .arg(repo.join(to))
                .status()
                .unwrap();
            assert!(status.success());
        }
        let base = kustomize("manifests/base");
        let deployment = base.iter().find(|o| o["kind"] == "Deployment").unwrap();
        let image = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
            .as_str()
            .unwrap()
            .to_owned();
        let next_image = format!("{}:{NEXT_TAG}", image.rsplit_once(':').unwrap().0);
        for (i, name) in [&image, &next_image].into_iter().enumerate() {
            let archive = node.plane.dir.path().join(format!("nsguard-{i}.tar"));
            node::image(kube_node, &binary, name, &archive);
            node.import(&archive);
        }
        let installed = Installed {
            node,
            image,
            next_image,
            repo,
            binary,
        };
        // README, "Install on a cluster", 2b: the script makes the certificates, applies
        // manifests/base, sets every webhook's caBundle and waits for the rollout.
        installed.install_manual_certs();
        installed
    }

    /// `certs/install-manual-certs.sh`, as README says: the install, and each rotation.
    fn install_manual_certs(&self) {
        let out = self
            .shell("certs/install-manual-certs.sh")
            .env("NSGUARD", &self.binary)
            .env("OUT", self.node.plane.dir.path().join("certs"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "install: {}{}\nkubelet: {}",
            text(&out.stdout),
            text(&out.stderr),
            self.node.log_tail("kubelet")
        );
    }

    fn plane(&self) -> &ControlPlane {
        &self.node.plane
    }

    /// `bash -c SCRIPT` from the repository root, with the node's kubeconfig and kubectl
    /// on the PATH, as a reader runs README's commands.
    fn shell(&self, script: &str) -> Command {
        let mut command = Command::new("bash");
        command
            .args(["-euo", "pipefail", "-c", script])
            .current_dir(&self.repo)
            .env("KUBECONFIG", &self.plane().kubeconfig)
            .stdin(Stdio::null());
        command
    }

    /// One of README's commands, in the reader's checkout. `kustomize edit set image`
    /// (no kustomize binary here) is done as kustomize does it: the kustomization's
    /// `newName` and `newTag` of that image set.
    fn run_readme_command(&self, command: &str) {
        if let Some(edit) = command.strip_prefix("(cd manifests/base && kustomize edit set image ")
        {
            let (name, image) = edit.trim_end_matches(')').split_once('=').unwrap();
            let (new_name, new_tag) = image.rsplit_once(':').unwrap();
            let path = self.repo.join("manifests/base/kustomization.yaml");
            let kustomization = std::fs::read_to_string(&path).unwrap();
            assert!(
                kustomization.contains(&format!("- name: {name}\n")),
                "{kustomization}"
            );
            let edited: Vec<String> = kustomization
                .lines()
                .map(|line| match line.trim_start().split_once(':') {
                    Some(("newName", _)) => format!("  newName: {new_name}"),
                    Some(("newTag", _)) => format!("  newTag: {new_tag}"),
                    _ => line.to_owned(),
                })
                .collect();
            std::fs::write(&path, edited.join("\n") + "\n").unwrap();
            return;
        }
        let out = self.shell(command).output().unwrap();
        assert!(
            out.status.success(),
            "{command}: {}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
    }

    /// The nsguard pods not being deleted, as the API server has them.
    fn pod_objects(&self) -> Vec<Value> {
        let pods = self
            .plane()
            .get(&[
                "pods",
                "-n",
                NAMESPACE,
                "-l",
                "app.kubernetes.io/name=nsguard",
            ])
            .unwrap();
        pods["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["metadata"].get("deletionTimestamp").is_none())
            .cloned()
            .collect()
    }

    /// The nsguard pods, by name: (name, IP, ready).
    fn pods(&self) -> Vec<(String, String, bool)> {
        self.pod_objects()
            .iter()
            .map(|p| {
                let ready = p["status"]["conditions"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|c| c["type"] == "Ready" && c["status"] == "True");
                (
                    p["metadata"]["name"].as_str().unwrap().to_owned(),
                    p["status"]["podIP"].as_str().unwrap_or_default().to_owned(),
                    ready,
                )
            })
            .collect()
    }

    /// Two pods Ready, and the Deployment's rollout done.
    fn await_two_ready(&self) {
        self.plane().ok(&[
            "-n",
            NAMESPACE,
            "rollout",
            "status",
            "deployment/nsguard",
            "--timeout=180s",
        ]);
        eventually("two nsguard pods Ready", Duration::from_secs(120), || {
            let pods = self.pods();
            (pods.len() == 2 && pods.iter().all(|p| p.2)).then_some(())
        });
    }

    /// A pod's metrics, from its IP on the node's bridge (this host routes to it).
    fn pod_metrics(&self, ip: &str) -> Option<String> {
        let out = Command::new("curl")
            .args([
                "-sf",
                "--max-time",
                "5",
                &format!("http://{ip}:9090/metrics"),
            ])
            .output()
            .ok()?;
        out.status.success().then(|| text(&out.stdout))
    }

    /// `series` summed over the running pods.
    fn metric_sum(&self, series: &str) -> f64 {
        self.pods()
            .iter()
            .filter_map(|(_, ip, _)| self.pod_metrics(ip))
            .map(|m| metric(&m, series))
            .sum()
    }
}

/// The shell commands of README's code block under the heading `heading` (`sh` blocks,
/// comments and blank lines left out), so that what the suite runs is what README says.
fn readme_commands(heading: &str) -> Vec<String> {
    let readme = std::fs::read_to_string(repo_path("README.md")).unwrap();
    let after = readme
        .split_once(&format!("\n{heading}\n"))
        .unwrap_or_else(|| panic!("README has no heading {heading:?}"))
        .1;
    let block = after
        .split_once("```sh\n")
        .and_then(|(_, rest)| rest.split_once("\n```"))
        .unwrap_or_else(|| panic!("no sh block under {heading:?}"))
        .0;
    block
        .lines()
        .map(|l| l.split_once(" #").map_or(l, |(command, _)| command).trim())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

// ------------------------------------------------------------------ a stream of reviews

/// What a stream of reviews through the API server got back, by kind.
#[derive(Debug, Default)]
struct Tally {
    /// The answer nsguard gives: the shared namespace refused, the misplaced create
    /// allowed with nsguard's warning (placement's `warn`), the stranding claim refused.
    answered: [AtomicUsize; 3],
    /// The API server could not get nsguard's answer (`failed calling webhook`, or for
    /// placement, whose failurePolicy is Ignore, an answer without nsguard's warning).
    failed: [AtomicUsize; 3],
    /// Let through what nsguard refuses.
    wrong_allows: [AtomicUsize; 3],
    /// Anything else, with the first few answers.
    other: AtomicUsize,
    samples: std::sync::Mutex<Vec<String>>,
}

const KINDS: [&str; 3] = ["namespace delete", "placement create", "claim create"];

impl Tally {
    fn sum(counts: &[AtomicUsize; 3]) -> usize {
        counts.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    fn report(&self) -> String {
        let by_kind = |counts: &[AtomicUsize; 3]| {
            KINDS
                .iter()
                .zip(counts)
                .map(|(k, c)| format!("{k} {}", c.load(Ordering::Relaxed)))
                .collect::<Vec<_>>()
                .join(", ")
        };
        format!(
            "answered: {}; failed: {}; wrong allows: {}; other: {} {:?}",
            by_kind(&self.answered),
            by_kind(&self.failed),
            by_kind(&self.wrong_allows),
            self.other.load(Ordering::Relaxed),
            self.samples.lock().unwrap()
        )
    }

    fn note(&self, what: String) {
        let mut samples = self.samples.lock().unwrap();
        if samples.len() < 5 {
            samples.push(what);
        }
    }
}

/// The cluster a stream of reviews works on: a namespace of two stacks (its delete is
/// refused), a sub-env's parent namespace (a create there is misplaced: allowed with a
/// warning, as placement ships in `warn`), and a stateful sub-env whose own namespace
/// exists (a claim created there strands the old one's data: refused).
struct Stream {
    stop: Arc<AtomicBool>,
    tally: Arc<Tally>,
    workers: Vec<std::thread::JoinHandle<()>>,
}

/// Requests each worker has in flight at once: one. The bound on reviews a pod can have
/// in flight when it dies.
const WORKERS_PER_KIND: usize = 2;

fn set_up_stream_cluster(installed: &Installed) {
    let plane = installed.plane();
    if plane.get(&["namespace", "e2e-stream-shared"]).is_some() {
        return;
    }
    namespace_with_stacks(
        plane,
        "e2e-stream-shared",
        &[
            ("e2e-stream-a", "production"),
            ("e2e-stream-b", "production"),
        ],
    );
    // The stateful sub-env of the stream: its claim Bound in its parent's namespace, its
    // own namespace created (a move under way).
    let sub_env = StatefulSubEnv::set_up(
        plane,
        "e2e-stream-store",
        "e2e-stream-store-tenant",
        "tenant",
        "e2e-stream-pv",
    );
    sub_env.make_target(plane);
}

impl Stream {
    /// Workers sending dry-run reviews through the API server as the admin, until
    /// [`Stream::finish`].
    fn start(installed: &Installed) -> Stream {
        set_up_stream_cluster(installed);
        let kubeconfig = installed.plane().kubeconfig.clone();
        let stop = Arc::new(AtomicBool::new(false));
        let tally = Arc::new(Tally::default());
        let mut workers = Vec::new();
        for kind in 0..KINDS.len() {
            for _ in 0..WORKERS_PER_KIND {
                let (stop, tally, kubeconfig) = (stop.clone(), tally.clone(), kubeconfig.clone());
                workers.push(std::thread::spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .unwrap();
                    runtime.block_on(review_loop(kind, &kubeconfig, &stop, &tally));
                }));
            }
        }
        Stream {
            stop,
            tally,
            workers,
        }
    }

    /// Stop the workers; what they counted.
    fn finish(self) -> Arc<Tally> {
        self.stop.store(true, Ordering::Relaxed);
        for worker in self.workers {
            worker.join().unwrap();
        }
        self.tally
    }

    /// Wait until at least `more` further reviews were answered.
    fn await_answers(&self, more: usize) {
        let start = Tally::sum(&self.tally.answered);
        eventually("reviews answered", Duration::from_secs(60), || {
            (Tally::sum(&self.tally.answered) >= start + more).then_some(())
        });
    }
}

async fn review_loop(kind: usize, kubeconfig: &Path, stop: &AtomicBool, tally: &Tally) {
    let client = kube::Client::try_from(kube_config(kubeconfig).await).unwrap();
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        n += 1;
        let request = match kind {
            0 => http::Request::delete("/api/v1/namespaces/e2e-stream-shared?dryRun=All")
                .body(kube::client::Body::empty()),
            1 => http::Request::post("/api/v1/namespaces/e2e-stream-store/configmaps?dryRun=All")
                .header("content-type", "application/json")
                .body(
                    json!({"apiVersion": "v1", "kind": "ConfigMap",
                        "metadata": {"name": format!("stream-{n}"), "namespace": "e2e-stream-store",
                            "labels": stack_labels("e2e-stream-store-tenant", "tenant", Some("production"))}})
                    .to_string()
                    .into_bytes()
                    .into(),
                ),
            _ => http::Request::post(
                "/api/v1/namespaces/e2e-stream-store-tenant/persistentvolumeclaims?dryRun=All",
            )
            .header("content-type", "application/json")
            .body(
                json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                    "metadata": {"name": "data", "namespace": "e2e-stream-store-tenant",
                        "labels": stack_labels("e2e-stream-store-tenant", "tenant", Some("production"))},
                    "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "e2e-hostpath",
                        "resources": {"requests": {"storage": "1Gi"}}}})
                .to_string()
                .into_bytes()
                .into(),
            ),
        }
        .unwrap();
        let answer = tokio::time::timeout(Duration::from_secs(30), async {
            let response = client.send(request).await?;
            let status = response.status().as_u16();
            let warning = response
                .headers()
                .get_all("warning")
                .iter()
                .any(|w| String::from_utf8_lossy(w.as_bytes()).contains("nsguard"));
            let body = response.into_body().collect_bytes().await?;
            Ok::<_, kube::Error>((status, warning, String::from_utf8_lossy(&body).into_owned()))
        })
        .await;
        let (status, warning, body) = match answer {
            Ok(Ok(answer)) => answer,
            Ok(Err(err)) => {
                tally.other.fetch_add(1, Ordering::Relaxed);
                tally.note(format!("{}: {err}", KINDS[kind]));
                continue;
            }
            Err(_) => {
                tally.other.fetch_add(1, Ordering::Relaxed);
                tally.note(format!("{}: no answer within 30 s", KINDS[kind]));
                continue;
            }
        };
        let nsguard_refused = body.contains("denied the request: nsguard:");
        let counter = match (kind, status) {
            _ if body.contains("failed calling webhook") => {
                tally.note(format!("{}: {status} {body}", KINDS[kind]));
                &tally.failed[kind]
            }
            (0, 403) if nsguard_refused && body.contains("holds objects of 2 stacks") => {
                &tally.answered[kind]
            }
            (1, 201) if warning => &tally.answered[kind],
            (1, 201) => &tally.failed[kind],
            (2, 409) if nsguard_refused && body.contains("refusing to create claim") => {
                &tally.answered[kind]
            }
            (0 | 2, 200 | 201) => &tally.wrong_allows[kind],
            _ => {
                tally.note(format!("{}: {status} {body}", KINDS[kind]));
                &tally.other
            }
        };
        counter.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

// ------------------------------------------------------------------ scenarios

/// As installed: two pods Ready on the node from the imported image, the webhooks called
/// through the Service (no URL anywhere). Through it, real and `--dry-run=server`: the
/// shared namespace refused naming both stacks, a single-owner one deleted, and the plain
/// move of a stateful sub-env refused at its first step by the volume guard.
fn installed_as_pods_it_answers_through_its_service(installed: &Installed) {
    let plane = installed.plane();
    installed.await_two_ready();
    let deployment = plane
        .get(&["deployment", "-n", NAMESPACE, "nsguard"])
        .unwrap();
    assert_eq!(
        deployment["spec"]["template"]["spec"]["containers"][0]["image"],
        installed.image.as_str()
    );
    let webhooks = plane
        .get(&["validatingwebhookconfiguration", "nsguard"])
        .unwrap();
    let hooks = webhooks["webhooks"].as_array().unwrap();
    assert!(hooks.len() >= 7, "{webhooks:#}");
    for hook in hooks {
        let client = &hook["clientConfig"];
        assert!(client.get("url").is_none(), "{hook:#}");
        assert_eq!(client["service"]["name"], "nsguard", "{hook:#}");
        assert_eq!(client["service"]["namespace"], NAMESPACE, "{hook:#}");
        assert!(
            client["caBundle"].as_str().is_some_and(|b| !b.is_empty()),
            "{hook:#}"
        );
    }
    namespace_with_stacks(
        plane,
        "e2e-node-shared",
        &[
            ("e2e-node-shop", "production"),
            ("e2e-node-billing", "production"),
        ],
    );
    namespace_with_stacks(plane, "e2e-node-single", &[("e2e-node-lone", "production")]);
    for dry_run in [true, false] {
        let mut args = vec!["delete", "namespace", "e2e-node-shared", "--wait=false"];
        if dry_run {
            args.push("--dry-run=server");
        }
        let out = plane.kubectl(&args);
        let stderr = text(&out.stderr);
        assert!(!out.status.success(), "{args:?} was allowed");
        for needle in [
            r#"admission webhook "namespace-guard.nsguard.dev" denied the request"#,
            "e2e-node-shop/production",
            "e2e-node-billing/production",
        ] {
            assert!(stderr.contains(needle), "{needle:?} not in: {stderr}");
        }
    }
    plane.ok(&["delete", "namespace", "e2e-node-single", "--dry-run=server"]);
    plane.ok(&["delete", "namespace", "e2e-node-single", "--wait=false"]);
    eventually("e2e-node-single gone", Duration::from_secs(90), || {
        plane
            .get(&["namespace", "e2e-node-single"])
            .is_none()
            .then_some(())
    });

    // The volume guard through the Service: the plain move's first step refused.
    let sub_env = StatefulSubEnv::set_up(
        plane,
        "e2e-node-store",
        "e2e-node-store-tenant",
        "tenant",
        "e2e-node-pv",
    );
    sub_env.make_target(plane);
    let claim = sub_env.claim(sub_env.target).to_string();
    for dry_run in [true, false] {
        let mut args = vec!["create", "-f", "-"];
        if dry_run {
            args.push("--dry-run=server");
        }
        refused_by_the_volume_guard(
            plane,
            &args,
            Some(&claim),
            &[
                "refusing to create claim e2e-node-store-tenant/data",
                "nsguard migrate plan --stack e2e-node-store-tenant/tenant",
            ],
        );
    }
    sub_env.data_intact();
}

/// simple-container's scratch volumes on a real node (issue #38): a sub-env still in its
/// parent's namespace, its own namespace created beside it (a move under way), its
/// Deployment with a generic ephemeral volume whose template carries the stack's labels.
/// The ephemeral-volume controller makes the Pod's claim, `kubectl rollout restart`
/// replaces the Pod, the garbage collector deletes the old claim (the volume guard lets
/// it, counted `ephemeral`), and the parent's namespace, holding only that sub-env, is
/// deleted cleanly (the namespace controller's claim deletes pass too).
fn ephemeral_volumes_roll_and_the_old_namespace_deletes(installed: &Installed) {
    let plane = installed.plane();
    let (parent, app, env) = ("e2e-scratch", "e2e-scratch-tenant", "tenant");
    let target = nsguard::simple_container::naming::target_namespace(app, env, "production")
        .unwrap()
        .into_owned();
    let labels = stack_labels(app, env, Some("production"));
    let mut objects: Vec<Value> = (0..4)
        .map(|i| {
            let dir = plane.dir.path().join("scratch").join(i.to_string());
            std::fs::create_dir_all(&dir).unwrap();
            json!({"apiVersion": "v1", "kind": "PersistentVolume",
                "metadata": {"name": format!("e2e-scratch-{i}")},
                "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                    "persistentVolumeReclaimPolicy": "Delete", "storageClassName": "e2e-scratch",
                    "hostPath": {"path": dir.display().to_string(), "type": "Directory"}}})
        })
        .collect();
    objects.extend([
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": parent}}),
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": target}}),
        // As simple-container writes a service's scratch volume: the stack's labels on the
        // claim template (pkg/clouds/pulumi/kubernetes/simple_container.go, `Ephemeral:`).
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": app, "namespace": parent, "labels": labels},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": app}},
                "template": {"metadata": {"labels": {"app": app}}, "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "containers": [{"name": "app", "image": "localhost/kube-node/pause:1.0",
                        "imagePullPolicy": "Never",
                        "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}]}],
                    "volumes": [{"name": "scratch", "ephemeral": {"volumeClaimTemplate": {
                        "metadata": {"labels": labels},
                        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "e2e-scratch",
                            "resources": {"requests": {"storage": "1Gi"}}}}}}]}}}}),
    ]);
    plane.apply(&objects);
    let claims = || -> Vec<(String, String)> {
        let list = plane.get(&["pvc", "-n", parent]).unwrap();
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["metadata"]["name"].as_str().unwrap().to_owned(),
                    c["status"]["phase"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect()
    };
    plane.ok(&[
        "-n",
        parent,
        "rollout",
        "status",
        &format!("deployment/{app}"),
        "--timeout=120s",
    ]);
    let first = eventually("the Pod's claim Bound", Duration::from_secs(60), || {
        let claims = claims();
        (claims.len() == 1 && claims[0].1 == "Bound").then(|| claims[0].0.clone())
    });
    let claim = plane.get(&["pvc", "-n", parent, &first]).unwrap();
    assert_eq!(claim["metadata"]["ownerReferences"][0]["kind"], "Pod");
    assert_eq!(
        claim["metadata"]["labels"]["simple-container-com/parent-env"],
        "production"
    );
    let before = installed.metric_sum(
        r#"nsguard_volume_guard_decisions_total{operation="delete",reason="ephemeral"}"#,
    );
    plane.ok(&[
        "-n",
        parent,
        "rollout",
        "restart",
        &format!("deployment/{app}"),
    ]);
    plane.ok(&[
        "-n",
        parent,
        "rollout",
        "status",
        &format!("deployment/{app}"),
        "--timeout=120s",
    ]);
    let second = eventually(
        "the old claim gone and the new Pod's Bound",
        Duration::from_secs(90),
        || {
            let claims = claims();
            (claims.len() == 1 && claims[0].0 != first && claims[0].1 == "Bound")
                .then(|| claims[0].0.clone())
        },
    );
    eprintln!("real_cluster: the rollout replaced claim {first} with {second}");
    let allowed = installed.metric_sum(
        r#"nsguard_volume_guard_decisions_total{operation="delete",reason="ephemeral"}"#,
    );
    assert!(
        allowed > before,
        "the garbage collector's delete was not judged ephemeral"
    );
    // Nothing refused: no DeleteDenied Event in the namespace.
    let events = text(&plane.ok(&["events", "-n", parent]));
    assert!(!events.contains("Denied"), "{events}");

    // The parent's namespace holds only this sub-env: one stack, its delete allowed, and
    // the namespace controller's deletes of the Pod's claim let through.
    plane.ok(&["delete", "namespace", parent, "--wait=false"]);
    let gone = poll(Duration::from_secs(120), || {
        plane.get(&["namespace", parent]).is_none().then_some(())
    });
    assert!(
        gone.is_some(),
        "{parent} still there: {:#}",
        plane.get(&["namespace", parent]).unwrap_or_default()["status"]
    );
}

/// The Lease: exactly one pod holds `nsguard-audit` and says so in its metrics; when that
/// pod is deleted (it releases the Lease as it stops), another takes over within the lease
/// duration.
fn one_pod_audits_and_the_other_takes_over_its_lease(installed: &Installed) {
    let plane = installed.plane();
    installed.await_two_ready();
    // The holder's identity is its pod's name and a suffix of its process's own.
    let holder = || -> Option<String> {
        let lease = plane.get(&["lease", "-n", NAMESPACE, "nsguard-audit"])?;
        let identity = lease["spec"]["holderIdentity"].as_str()?;
        Some(
            identity
                .rsplit_once('_')
                .map_or(identity, |(pod, _)| pod)
                .to_owned(),
        )
    };
    let pods = installed.pods();
    let leader = poll(Duration::from_secs(60), || {
        holder().filter(|h| pods.iter().any(|p| &p.0 == h))
    })
    .unwrap_or_else(|| {
        panic!(
            "no pod of {pods:?} holds the Lease: {:#}",
            plane
                .get(&["lease", "-n", NAMESPACE, "nsguard-audit"])
                .unwrap_or_default()
        )
    });
    let leaders: Vec<f64> = eventually(
        "the leader metric on both pods",
        Duration::from_secs(60),
        || {
            let values: Vec<f64> = pods
                .iter()
                .map(|(_, ip, _)| {
                    installed
                        .pod_metrics(ip)
                        .map(|m| metric(&m, "nsguard_audit_leader"))
                })
                .collect::<Option<_>>()?;
            (values.iter().sum::<f64>() == 1.0).then_some(values)
        },
    );
    let leading = pods
        .iter()
        .zip(&leaders)
        .find(|(_, v)| **v == 1.0)
        .unwrap()
        .0;
    assert_eq!(leading.0, leader, "the metric and the Lease agree");
    let deleted_at = Instant::now();
    plane.ok(&["delete", "pod", "-n", NAMESPACE, &leader, "--wait=false"]);
    let next = eventually(
        "another pod holding the Lease",
        Duration::from_secs(60),
        || holder().filter(|h| *h != leader),
    );
    let took = deleted_at.elapsed();
    eprintln!(
        "real_cluster: {next} took the Lease over {:.1} s after {leader} was deleted",
        took.as_secs_f64()
    );
    assert!(
        took < Duration::from_secs(15 + 15),
        "the Lease moved after {took:?}, past its duration (15 s) and a margin"
    );
    installed.await_two_ready();
}

/// A pod told to stop (deleted: the kubelet sends SIGTERM) answers `/readyz` with 503 on
/// both ports at once, the kubelet's probe port (metrics) and the webhook port, and keeps
/// serving `/metrics` while the Service drops it; then it exits cleanly.
fn a_stopping_pod_fails_readiness_on_both_ports_and_serves_its_metrics(installed: &Installed) {
    let plane = installed.plane();
    installed.await_two_ready();
    let (pod, ip, _) = installed.pods().remove(0);
    let ca = installed.node.plane.dir.path().join("certs/ca.crt");
    let get = |url: &str, tls: bool| -> Option<u16> {
        let mut curl = Command::new("curl");
        curl.args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "2",
        ]);
        if tls {
            curl.arg("--cacert").arg(&ca).args([
                "--resolve",
                &format!("nsguard.nsguard-system.svc:8443:{ip}"),
            ]);
        }
        let out = curl.arg(url).output().ok()?;
        text(&out.stdout)
            .trim()
            .parse()
            .ok()
            .filter(|code| *code != 0)
    };
    let webhook_readyz = "https://nsguard.nsguard-system.svc:8443/readyz";
    let metrics_port = |path: &str| format!("http://{ip}:9090{path}");
    assert_eq!(get(webhook_readyz, true), Some(200));
    assert_eq!(get(&metrics_port("/readyz"), false), Some(200));
    plane.ok(&["delete", "pod", "-n", NAMESPACE, &pod, "--wait=false"]);
    // --shutdown-delay (3 s): not ready on both ports, still serving.
    let answers = eventually(
        "the stopping pod's /readyz 503",
        Duration::from_secs(20),
        || {
            let probe = get(&metrics_port("/readyz"), false)?;
            (probe == 503).then(|| {
                (
                    get(webhook_readyz, true),
                    get(&metrics_port("/metrics"), false),
                )
            })
        },
    );
    assert_eq!(
        answers,
        (Some(503), Some(200)),
        "(webhook port /readyz, metrics port /metrics) while stopping"
    );
    let log = text(&plane.ok(&["logs", "-n", NAMESPACE, &pod]));
    assert!(log.contains("shutdown requested"), "{log}");
    eventually("the stopped pod gone", Duration::from_secs(60), || {
        plane
            .get(&["pod", "-n", NAMESPACE, &pod])
            .is_none()
            .then_some(())
    });
    installed.await_two_ready();
}

/// README's upgrade under a steady stream of reviews through the API server (namespace
/// deletes, placement creates, claim creates): `kubectl rollout restart`, then an image
/// change. No review fails (no `failed calling webhook`), none lets through what nsguard
/// refuses: readiness, the shutdown delay and drain, `maxUnavailable: 0` and the
/// PodDisruptionBudget keep a pod answering throughout.
fn an_upgrade_under_a_stream_of_reviews_fails_none(installed: &Installed) {
    let plane = installed.plane();
    installed.await_two_ready();
    let budget = plane.get(&["pdb", "-n", NAMESPACE, "nsguard"]).unwrap();
    assert_eq!(budget["spec"]["minAvailable"], 1);
    let stream = Stream::start(installed);
    stream.await_answers(30);
    let restart = installed.shell("kubectl -n nsguard-system rollout restart deployment/nsguard && kubectl -n nsguard-system rollout status deployment/nsguard --timeout=5m").output().unwrap();
    assert!(restart.status.success(), "{}", text(&restart.stderr));
    stream.await_answers(30);
    // README's upgrade, its commands as written, with the new image's tag: every object
    // applied again (RBAC included) and a rolling update, under the stream.
    for command in readme_commands("### Upgrade") {
        let command = command.replace("registry.example.com/nsguard:0.2.0", &installed.next_image);
        installed.run_readme_command(&command);
    }
    installed.await_two_ready();
    stream.await_answers(30);
    let tally = stream.finish();
    let report = tally.report();
    eprintln!("real_cluster: upgrade under load: {report}");
    assert_eq!(Tally::sum(&tally.failed), 0, "{report}");
    assert_eq!(Tally::sum(&tally.wrong_allows), 0, "{report}");
    assert_eq!(tally.other.load(Ordering::Relaxed), 0, "{report}");
    for (kind, answered) in KINDS.iter().zip(&tally.answered) {
        assert!(answered.load(Ordering::Relaxed) >= 10, "{kind}: {report}");
    }
    let images: Vec<String> = installed
        .pod_objects()
        .iter()
        .map(|p| {
            p["spec"]["containers"][0]["image"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(images, [installed.next_image.as_str(); 2]);
}

/// README's rotation (`certs/install-manual-certs.sh` again) under the same stream: a new
/// CA, and the pods serve the old certificate until the kubelet updates the mounted Secret
/// and nsguard reloads it; the caBundle holds both CAs meanwhile, so no review fails.
fn a_certificate_rotation_under_a_stream_of_reviews_fails_none(installed: &Installed) {
    let plane = installed.plane();
    installed.await_two_ready();
    let pods: Vec<String> = installed.pods().into_iter().map(|p| p.0).collect();
    let reloads = |pod: &str| {
        let log = text(&plane.kubectl(&["logs", "-n", NAMESPACE, pod]).stdout);
        log.matches("reloaded TLS certificate").count()
    };
    let before: Vec<usize> = pods.iter().map(|p| reloads(p)).collect();
    let stream = Stream::start(installed);
    stream.await_answers(30);
    let rotated = Instant::now();
    installed.install_manual_certs();
    let bundle = plane
        .get(&["validatingwebhookconfiguration", "nsguard"])
        .unwrap()["webhooks"][0]["clientConfig"]["caBundle"]
        .as_str()
        .map(|b| {
            use base64::Engine;
            text(&base64::engine::general_purpose::STANDARD.decode(b).unwrap())
        })
        .unwrap();
    assert_eq!(bundle.matches("-BEGIN CERTIFICATE-").count(), 2, "{bundle}");
    // The kubelet updates a mounted Secret on its own schedule (about a minute here).
    let reloaded = poll(Duration::from_secs(240), || {
        (pods.iter().zip(&before).all(|(p, n)| reloads(p) > *n)).then_some(())
    });
    assert!(
        reloaded.is_some(),
        "the pods {pods:?} (reloads before {before:?}, now {:?}) did not all reload; now: {:?}",
        pods.iter().map(|p| reloads(p)).collect::<Vec<_>>(),
        installed.pods()
    );
    eprintln!(
        "real_cluster: both pods served the new certificate {:.0} s after the rotation",
        rotated.elapsed().as_secs_f64()
    );
    stream.await_answers(30);
    let tally = stream.finish();
    let report = tally.report();
    eprintln!("real_cluster: rotation under load: {report}");
    assert_eq!(Tally::sum(&tally.failed), 0, "{report}");
    assert_eq!(Tally::sum(&tally.wrong_allows), 0, "{report}");
    assert_eq!(tally.other.load(Ordering::Relaxed), 0, "{report}");
}

/// One nsguard process killed with SIGKILL under the same stream (a crash: no drain). The
/// reviews that fail are those it had in flight (their connection reset) and those the
/// Service sent it before the kubelet noticed the crash and restarted it (connection
/// refused): the API server retries neither, and how many depends on the request rate over
/// that second or so (0 to 3 seen), so the test counts them, says how many, and holds them
/// to those two causes. None is a wrong allow, and once the pod is back no review fails.
fn a_pod_killed_hard_fails_at_most_its_reviews_in_flight(installed: &Installed) {
    installed.await_two_ready();
    let stream = Stream::start(installed);
    stream.await_answers(30);
    // The host sees the containers' processes: the newest nsguard server.
    let out = Command::new("pgrep")
        .args(["-n", "-f", "^/usr/local/bin/nsguard serve"])
        .output()
        .unwrap();
    let pid = text(&out.stdout).trim().to_owned();
    assert!(!pid.is_empty(), "no nsguard process on the node");
    let killed = Command::new("kill").args(["-KILL", &pid]).status().unwrap();
    assert!(killed.success());
    stream.await_answers(60);
    installed.await_two_ready();
    let tally = stream.finish();
    let report = tally.report();
    let failed = Tally::sum(&tally.failed);
    eprintln!("real_cluster: one pod killed under load: {failed} failed review(s); {report}");
    assert_eq!(Tally::sum(&tally.wrong_allows), 0, "{report}");
    assert_eq!(tally.other.load(Ordering::Relaxed), 0, "{report}");
    let causes = tally.samples.lock().unwrap().clone();
    for cause in &causes {
        assert!(
            [
                "connection refused",
                "connection reset",
                "EOF",
                "broken pipe"
            ]
            .iter()
            .any(|c| cause.contains(c)),
            "a failure the crash does not explain: {cause}"
        );
    }
    let restarts: u64 = installed
        .pod_objects()
        .iter()
        .map(|p| {
            p["status"]["containerStatuses"][0]["restartCount"]
                .as_u64()
                .unwrap_or(0)
        })
        .sum();
    assert_eq!(restarts, 1, "the kubelet restarted the killed container");
    // Back to two pods: every review answered again.
    let after = Stream::start(installed);
    after.await_answers(60);
    let tally = after.finish();
    let report = tally.report();
    assert_eq!(Tally::sum(&tally.failed), 0, "after the restart: {report}");
    assert_eq!(
        tally.other.load(Ordering::Relaxed),
        0,
        "after the restart: {report}"
    );
}

/// Issue #41's proof: with `nsguard policy --placement-mode enforce` applied and every
/// nsguard pod gone (the Deployment scaled to zero), the API server itself still refuses a
/// sub-env's object in its parent's namespace, with nsguard's message, and allows it in
/// its own; then nsguard is scaled back and the policy removed.
fn scaled_to_zero_the_placement_policy_still_refuses_a_misplaced_create(installed: &Installed) {
    let plane = installed.plane();
    installed.await_two_ready();
    let printed = Command::new(&installed.binary)
        .args(["policy", "--placement-mode", "enforce"])
        .output()
        .unwrap();
    assert!(printed.status.success(), "{printed:?}");
    let out = plane.kubectl_with(&["apply", "-f", "-"], Some(&text(&printed.stdout)));
    assert!(out.status.success(), "{}", text(&out.stderr));
    for name in ["vap-parent", "vapapp-tenant-a"] {
        plane.apply(&[json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "labels": {"nsguard.dev/e2e": "true"}}})]);
    }
    plane.ok(&[
        "-n",
        NAMESPACE,
        "scale",
        "deployment/nsguard",
        "--replicas=0",
    ]);
    eventually("no nsguard pod", Duration::from_secs(120), || {
        installed.pod_objects().is_empty().then_some(())
    });
    let config_map = |namespace: &str, name: &str| {
        json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": namespace,
                "labels": stack_labels("vapapp-tenant-a", "tenant-a", Some("production"))}})
        .to_string()
    };
    // The binding takes effect once the API server has read it: the dry run says when.
    let refusal = eventually("the policy refuses", Duration::from_secs(60), || {
        let out = plane.kubectl_with(
            &["create", "--dry-run=server", "-f", "-"],
            Some(&config_map("vap-parent", "dry")),
        );
        let stderr = text(&out.stderr);
        (!out.status.success() && stderr.contains("ValidatingAdmissionPolicy 'nsguard-placement'"))
            .then_some(stderr)
    });
    assert!(
        refusal.contains(
            "denied request: nsguard: ConfigMap \"dry\" is in the wrong namespace: sub-env stack vapapp-tenant-a/tenant-a"
        ) && refusal.contains("belongs in namespace \"vapapp-tenant-a\", not \"vap-parent\""),
        "{refusal}"
    );
    let out = plane.kubectl_with(
        &["create", "-f", "-"],
        Some(&config_map("vap-parent", "real")),
    );
    assert!(!out.status.success(), "created while misplaced");
    assert!(
        plane
            .get(&["configmap", "-n", "vap-parent", "real"])
            .is_none()
    );
    let out = plane.kubectl_with(
        &["create", "-f", "-"],
        Some(&config_map("vapapp-tenant-a", "home")),
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        installed.pod_objects().is_empty(),
        "nsguard came back during the check"
    );
    // Back as it was: the pods, then the policy gone and the namespaces deleted (the
    // namespace guard answers again).
    plane.ok(&[
        "-n",
        NAMESPACE,
        "scale",
        "deployment/nsguard",
        "--replicas=2",
    ]);
    installed.await_two_ready();
    plane.ok(&[
        "delete",
        "validatingadmissionpolicybinding,validatingadmissionpolicy",
        "nsguard-placement",
    ]);
    // Through the Service once kube-proxy routes to the new pods again.
    eventually(
        "the namespace guard answers again",
        Duration::from_secs(60),
        || {
            let out = plane.kubectl(&[
                "delete",
                "namespace",
                "vap-parent",
                "vapapp-tenant-a",
                "--wait=false",
                "--ignore-not-found",
            ]);
            out.status.success().then_some(())
        },
    );
}

/// README's uninstall, its commands as written: every object of the install is gone, and
/// the pods, stopped before their RBAC went, logged no error (they released the Lease and
/// wrote nothing they were refused).
fn the_uninstall_leaves_nothing_and_logs_no_error(installed: &Installed) {
    let plane = installed.plane();
    installed.await_two_ready();
    // Follow each pod's log to its end.
    let followers: Vec<(String, std::process::Child)> = installed
        .pods()
        .into_iter()
        .map(|(name, ..)| {
            let child = Command::new("kubectl")
                .arg("--kubeconfig")
                .arg(&plane.kubeconfig)
                .args(["logs", "-f", "-n", NAMESPACE, &name])
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            (name, child)
        })
        .collect();
    std::thread::sleep(Duration::from_secs(1));
    for command in readme_commands("### Uninstall") {
        installed.run_readme_command(&command);
    }
    for (name, child) in followers {
        let out = child.wait_with_output().unwrap();
        let log = text(&out.stdout);
        assert!(
            log.contains("shutting down"),
            "{name} did not stop gracefully:\n{log}"
        );
        let bad: Vec<&str> = log
            .lines()
            .filter(|l| {
                l.contains("\"level\":\"ERROR\"")
                    || l.contains("\"level\":\"WARN\"")
                    || l.contains("forbidden")
            })
            .collect();
        assert!(bad.is_empty(), "{name} logged:\n{}", bad.join("\n"));
    }
    let left = plane.get(&[
        "validatingwebhookconfiguration,mutatingwebhookconfiguration,clusterrole,clusterrolebinding,priorityclass,namespace",
        "-l",
        "app.kubernetes.io/part-of=nsguard",
    ]);
    assert_eq!(left.unwrap()["items"], json!([]), "left behind");
    assert!(plane.get(&["namespace", NAMESPACE]).is_none());
    let everything = text(&plane.ok(&[
        "get",
        "validatingwebhookconfiguration,mutatingwebhookconfiguration,clusterrole,clusterrolebinding,priorityclass",
        "-o",
        "name",
    ]));
    assert!(!everything.contains("nsguard"), "{everything}");
}
