//! The plan as a POSIX shell script a person reviews and runs in two stages around the one
//! step nsguard cannot do: `sh migrate.sh before`, the redeploy, `sh migrate.sh after`.
//! Each stage checks the cluster is where the next step needs it and stops otherwise;
//! every mutating line is a server-side dry run unless the plan is made `apply_ready`.
//! A plan starts from where each claim stands when it is made: make a new one to resume.

use std::fmt::Write as _;

use super::{
    ClaimMove, FROM_ANNOTATION, POLICY_ANNOTATION, STACK_ANNOTATION, Stage, SubEnv, TO_ANNOTATION,
    UnlabelledClaim,
};
use crate::audit::Inventory;
use crate::simple_container::naming::{is_dns1123_label, is_dns1123_subdomain};

/// How the script is written.
#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Mutating lines without `--dry-run=server`, and the checks after them.
    pub apply_ready: bool,
    /// At the end of `after`, put back the reclaim policy `Delete` the plan changed.
    pub restore_reclaim_policy: bool,
}

/// The script, and the sub-envs it does not migrate (each with why).
#[derive(Debug, Clone)]
pub struct Script {
    pub text: String,
    pub refused: Vec<String>,
}

/// The plan for `sub_envs` (and the keeping of `unlabelled` claims), each claim from its
/// stage in `inventory`.
pub fn render(
    sub_envs: &[SubEnv],
    unlabelled: &[UnlabelledClaim],
    inventory: &Inventory,
    options: Options,
) -> Script {
    let cluster = super::Cluster::of(inventory);
    let mut writer = Writer {
        options,
        before: String::new(),
        after: String::new(),
        summary: String::new(),
        refused: Vec::new(),
    };
    writer.unlabelled(unlabelled);
    for sub_env in sub_envs {
        let stages: Vec<Stage> = sub_env
            .claims
            .iter()
            .map(|c| Stage::of(sub_env, c, &cluster))
            .collect();
        if let Err(why) = valid(sub_env, &stages) {
            let line = format!(
                "{} ({} -> {}): {why}",
                sub_env.stack(),
                sub_env.from,
                sub_env.to
            );
            let _ = writeln!(writer.summary, "# not planned: {}", comment(&line));
            writer.refused.push(line);
            continue;
        }
        writer.sub_env(sub_env, &stages);
    }
    let refused = std::mem::take(&mut writer.refused);
    Script {
        text: writer.finish(sub_envs.len()),
        refused,
    }
}

/// Why `sub_env` cannot be planned, if it cannot: a stuck claim, or a name nsguard will
/// not put in a command (a dump is not checked by any API server).
fn valid(sub_env: &SubEnv, stages: &[Stage]) -> Result<(), String> {
    for name in [&sub_env.from, &sub_env.to] {
        if !is_dns1123_label(name) {
            return Err(format!("namespace {name:?} is not a DNS-1123 label"));
        }
    }
    for value in [&sub_env.owner.app_name, &sub_env.owner.env] {
        if !is_label_value(value) {
            return Err(format!("stack {value:?} is not a label value"));
        }
    }
    let names = sub_env
        .claims
        .iter()
        .flat_map(|c| [&c.name, &c.volume])
        .chain(sub_env.workloads.iter());
    for name in names {
        let bare = name.split_once('/').map_or(name.as_str(), |(_, n)| n);
        if !is_dns1123_subdomain(bare) {
            return Err(format!("{name:?} is not a valid object name"));
        }
    }
    for (claim, stage) in sub_env.claims.iter().zip(stages) {
        if let Stage::Stuck { problem } = stage {
            return Err(format!("claim {}: {problem}", claim.name));
        }
    }
    Ok(())
}

struct Writer {
    options: Options,
    before: String,
    after: String,
    summary: String,
    refused: Vec<String>,
}

const DRY_RUN: &str = " --dry-run=server";

impl Writer {
    /// ` --dry-run=server` unless the plan is apply-ready.
    fn dry(&self) -> &'static str {
        if self.options.apply_ready {
            ""
        } else {
            DRY_RUN
        }
    }

    /// A check that holds only once the mutating line above it is applied: a command in
    /// an apply-ready plan, a comment in a dry run (where it could never hold).
    fn applied(&mut self, line: &str) {
        if self.options.apply_ready {
            let _ = writeln!(self.before, "  {line}");
        } else {
            let _ = writeln!(self.before, "  # once applied: {line}");
        }
    }

    /// Reclaim policy `Retain` on `volume`, then (applied) seen so.
    fn keep(&mut self, volume: &str) {
        let _ = writeln!(
            self.before,
            "  kubectl patch pv '{volume}' --type=merge -p '{{\"spec\":{{\"persistentVolumeReclaimPolicy\":\"Retain\"}}}}'{}",
            self.dry()
        );
        self.applied(&retained(volume));
    }

    fn unlabelled(&mut self, claims: &[UnlabelledClaim]) {
        for claim in claims {
            let (namespace, name, volume) = (&claim.namespace, &claim.claim, &claim.volume);
            if !(is_dns1123_label(namespace)
                && is_dns1123_subdomain(name)
                && is_dns1123_subdomain(volume))
            {
                let line =
                    format!("claim {namespace:?}/{name:?} (volume {volume:?}): not a valid name");
                let _ = writeln!(self.summary, "# not kept: {}", comment(&line));
                self.refused.push(line);
                continue;
            }
            let _ = writeln!(
                self.summary,
                "# claim {namespace}/{name} carries no stack labels: it may be a sub-env's, and the redeploy\n#   would delete its volume {volume} (reclaim policy Delete); kept, not handed over, not restored"
            );
            let _ = writeln!(
                self.before,
                "  # keep volume {volume} of claim {namespace}/{name} (no stack labels: whose it is is not known)\n  expect 'claim {namespace}/{name}' 'Bound {volume}' kubectl get pvc '{name}' -n '{namespace}' -o 'jsonpath={{.status.phase}} {{.spec.volumeName}}'"
            );
            self.keep(volume);
        }
    }

    fn sub_env(&mut self, sub_env: &SubEnv, stages: &[Stage]) {
        let dry = self.dry();
        let (stack, from, to) = (sub_env.stack(), &sub_env.from, &sub_env.to);
        let parent = if sub_env.owner.parent_env.is_empty() {
            String::new()
        } else {
            format!(" (parent-env {})", comment(&sub_env.owner.parent_env))
        };
        let _ = writeln!(
            self.summary,
            "#\n# sub-env {stack}{parent}: {from} -> {to}\n#   redeploy: its stack with stackEnv {} (sc deploy -s STACK -e {})",
            comment(&sub_env.owner.env),
            comment(&sub_env.owner.env)
        );
        self.summary.push_str(&state_step(sub_env));
        // Without volumes, its workloads move with the redeploy like everything else; with
        // them, the plan stops them first.
        let moving: Vec<String> = if sub_env.claims.is_empty() {
            sub_env
                .workloads
                .iter()
                .chain(&sub_env.others)
                .cloned()
                .collect()
        } else {
            sub_env.others.clone()
        };
        if !moving.is_empty() {
            let _ = writeln!(
                self.summary,
                "#   moves with the redeploy, no step: {}",
                comment(&list(&moving))
            );
        }
        if !sub_env.claims.is_empty() && !sub_env.workloads.is_empty() {
            let _ = writeln!(
                self.summary,
                "#   stopped before the hand-over, recreated by the redeploy: {}",
                comment(&list(&sub_env.workloads))
            );
        }
        for ephemeral in &sub_env.ephemeral_claims {
            let _ = writeln!(
                self.summary,
                "#   claim {} left out: the generic ephemeral volume of Pod {}, made and deleted with its Pod (the redeploy's Pods get new ones); nothing to hand over",
                comment(&ephemeral.name),
                comment(&ephemeral.pod)
            );
        }
        for (claim, stage) in sub_env.claims.iter().zip(stages) {
            let _ = writeln!(
                self.summary,
                "#   claim {} on volume {} (reclaim policy {}): {}",
                claim.name,
                claim.volume,
                comment(claim.reclaim_policy.as_deref().unwrap_or("unknown")),
                match stage {
                    Stage::NotStarted => "keep it, hand it over",
                    Stage::Kept => "kept already; hand it over",
                    Stage::Releasing { .. } | Stage::Released => "being handed over",
                    Stage::Reserved => "handed over; waits for the redeploy",
                    Stage::Binding => "redeployed; binding",
                    Stage::Done => "done",
                    Stage::Stuck { .. } => "stuck",
                }
            );
        }
        if sub_env.claims.is_empty() {
            let _ = writeln!(
                self.summary,
                "#   no volume: redeploy it, nothing to do before or after"
            );
            return;
        }
        let at = |rank: u8| stages.iter().any(|s| s.rank() <= rank);
        if at(Stage::Reserved.rank()) {
            let _ = writeln!(
                self.before,
                "\n  # ---- sub-env {stack}: {from} -> {to} ----"
            );
        }
        // 1. Where the plan starts: each claim as it was read, the new claim not there.
        for (claim, stage) in sub_env.claims.iter().zip(stages) {
            self.start_check(sub_env, claim, stage);
        }
        // 2. Keep each volume, and record the hand-over on it for `nsguard migrate check`.
        for (claim, stage) in sub_env.claims.iter().zip(stages) {
            if stage.rank() > Stage::Kept.rank() {
                continue;
            }
            let (name, volume) = (&claim.name, &claim.volume);
            let before_policy = comment(claim.reclaim_policy.as_deref().unwrap_or("Retain"));
            if *stage == Stage::NotStarted {
                let _ = writeln!(
                    self.before,
                    "  # keep volume {volume}: with reclaim policy Delete, deleting claim {from}/{name} would delete it"
                );
                self.keep(volume);
            } else {
                // Kept already: seen so again right before its claim is deleted.
                let _ = writeln!(self.before, "  {}", retained(volume));
            }
            let _ = writeln!(
                self.before,
                "  kubectl annotate pv '{volume}' --overwrite '{STACK_ANNOTATION}={stack}' '{FROM_ANNOTATION}={from}/{name}' '{TO_ANNOTATION}={to}/{name}' '{POLICY_ANNOTATION}={before_policy}'{dry}"
            );
        }
        // 3. Stop what mounts the claims (again, when a claim is still held), then delete
        // the old claims (their volumes stay).
        if stages.iter().any(Stage::holds_old_claim) {
            let _ = writeln!(
                self.before,
                "  # stop {stack} in {from}: a mounted claim is not released, and a volume is written by one\n  # sub-env at a time (downtime starts here; the redeploy ends it)"
            );
            if sub_env.workloads.is_empty() {
                let _ = writeln!(
                    self.before,
                    "  # nsguard found no Deployment or StatefulSet of {stack} in {from}: stop whatever mounts\n  # its claims (kubectl describe pvc NAME -n {from}: Used By); the wait below stops the plan until then"
                );
            }
            for workload in &sub_env.workloads {
                // `deployment/web`: kubectl's resource/name (the name is lowercase already).
                let _ = writeln!(
                    self.before,
                    "  kubectl scale '{}' -n '{from}' --replicas=0{dry}",
                    workload.to_lowercase()
                );
            }
            for (claim, stage) in sub_env.claims.iter().zip(stages) {
                if stage.rank() <= Stage::Kept.rank() {
                    let _ = writeln!(
                        self.before,
                        "  kubectl delete pvc '{}' -n '{from}' --wait=false{dry}",
                        claim.name
                    );
                }
            }
        }
        // 4. Each claim gone and its volume Released, then reserved for the new claim.
        for (claim, stage) in sub_env.claims.iter().zip(stages) {
            let (name, volume) = (&claim.name, &claim.volume);
            if stage.holds_old_claim() {
                self.applied(&format!(
                    "kubectl wait --for=delete 'pvc/{name}' -n '{from}' --timeout=10m"
                ));
                self.applied(&format!(
                    "kubectl wait --for=jsonpath='{{.status.phase}}'=Released 'pv/{volume}' --timeout=5m"
                ));
            }
            if stage.rank() <= Stage::Released.rank() {
                let _ = writeln!(
                    self.before,
                    "  # reserve volume {volume} for claim {to}/{name}, which the redeploy creates (only if it still names {from}/{name})\n  kubectl patch pv '{volume}' --type=json -p '[{{\"op\":\"test\",\"path\":\"/spec/claimRef/namespace\",\"value\":\"{from}\"}},{{\"op\":\"test\",\"path\":\"/spec/claimRef/name\",\"value\":\"{name}\"}},{{\"op\":\"replace\",\"path\":\"/spec/claimRef\",\"value\":{{\"apiVersion\":\"v1\",\"kind\":\"PersistentVolumeClaim\",\"namespace\":\"{to}\",\"name\":\"{name}\"}}}}]'{dry}"
                );
                self.applied(&format!(
                    "kubectl wait --for=jsonpath='{{.status.phase}}'=Available 'pv/{volume}' --timeout=5m"
                ));
            }
        }
        if at(Stage::Reserved.rank()) {
            let _ = writeln!(
                self.before,
                "  echo 'nsguard: the volumes of {stack} are reserved for {to}. Now forget its Namespace in its Pulumi state (the state step at the top) if not done yet, sc deploy it with simple-container {} or later, then run: sh migrate.sh after' >&2",
                crate::simple_container::releases::KEEPS_NAMESPACE
            );
        }
        // After the redeploy: each new claim Bound to its old volume, the old claim gone.
        let _ = writeln!(
            self.after,
            "\n  # ---- sub-env {stack}: {from} -> {to} ----"
        );
        for claim in &sub_env.claims {
            let (name, volume) = (&claim.name, &claim.volume);
            // First: a redeploy that kept the sub-env where it was re-created the claim
            // there, on a new volume, while the data waits for the new namespace.
            let _ = writeln!(
                self.after,
                "  stayed '{name}' '{from}' '{volume}' '{to}' 'the redeploy did not move {stack}: {why}, so it re-created the claim in {from}, on a new volume, while its data waits on volume {volume} for {to}/{name}. Stop the sub-env in {from} again, delete claim {from}/{name} once anything written to it is saved, forget its Namespace in its Pulumi state (the state step at the top of this plan), sc deploy, then sh migrate.sh after'",
                why = crate::simple_container::releases::why_it_stays(),
            );
            let _ = writeln!(
                self.after,
                "  present 'claim {to}/{name} (the redeploy creates it)' kubectl get pvc '{name}' -n '{to}' --ignore-not-found -o name\n  kubectl wait --for=jsonpath='{{.status.phase}}'=Bound 'pvc/{name}' -n '{to}' --timeout=10m\n  expect 'the volume of claim {to}/{name}' '{volume}' kubectl get pvc '{name}' -n '{to}' -o 'jsonpath={{.spec.volumeName}}'\n  expect 'claim {from}/{name}' '' kubectl get pvc '{name}' -n '{from}' --ignore-not-found -o name"
            );
            if claim.reclaim_policy.as_deref() != Some("Delete") {
                continue;
            }
            let restore = format!(
                "kubectl patch pv '{volume}' --type=merge -p '{{\"spec\":{{\"persistentVolumeReclaimPolicy\":\"Delete\"}}}}'"
            );
            if self.options.restore_reclaim_policy {
                let _ = writeln!(
                    self.after,
                    "  # put back reclaim policy Delete on {volume}, now Bound to {to}/{name}\n  expect 'volume {volume}' 'Bound {to} {name}' kubectl get pv '{volume}' -o 'jsonpath={{.status.phase}} {{.spec.claimRef.namespace}} {{.spec.claimRef.name}}'\n  {restore}{dry}"
                );
            } else {
                let _ = writeln!(
                    self.after,
                    "  # volume {volume} keeps reclaim policy Retain (it had Delete); to put it back: {restore}"
                );
            }
        }
    }

    /// The check that `claim` is where `stage` says, before the plan acts on it.
    fn start_check(&mut self, sub_env: &SubEnv, claim: &ClaimMove, stage: &Stage) {
        let (from, to, name, volume) = (&sub_env.from, &sub_env.to, &claim.name, &claim.volume);
        let volume_state = |phase: &str, namespace: &str| {
            format!(
                "  expect 'volume {volume}' '{phase} {namespace} {name}' kubectl get pv '{volume}' -o 'jsonpath={{.status.phase}} {{.spec.claimRef.namespace}} {{.spec.claimRef.name}}'\n"
            )
        };
        let line = match stage {
            Stage::NotStarted | Stage::Kept => format!(
                "  expect 'claim {from}/{name}' 'Bound {volume}' kubectl get pvc '{name}' -n '{from}' -o 'jsonpath={{.status.phase}} {{.spec.volumeName}}'\n"
            ),
            Stage::Releasing { .. } => String::new(),
            Stage::Released => volume_state("Released", from),
            Stage::Reserved => volume_state("Available", to),
            Stage::Binding | Stage::Done | Stage::Stuck { .. } => return,
        };
        self.before.push_str(&line);
        let _ = writeln!(
            self.before,
            "  expect 'claim {to}/{name} (the redeploy creates it)' '' kubectl get pvc '{name}' -n '{to}' --ignore-not-found -o name"
        );
    }

    fn finish(self, sub_envs: usize) -> String {
        let mut out = format!(
            "#!/bin/sh\n# nsguard migrate plan: {sub_envs} sub-env(s) into their own namespaces, every volume kept.\n# {why}.\n# Review it, then for each sub-env, in order:\n#   1. its state step below: forget its Namespace in its Pulumi state (nothing in the cluster\n#      changes; nsguard never runs Pulumi)\n#   2. sh migrate.sh before\n#   3. sc deploy, with {release}\n#   4. sh migrate.sh after\n# Each step checks the cluster is where it needs it and stops otherwise; `nsguard migrate\n# check` says where things stand, and a new plan starts from there. Why this order:\n# docs/migration.md. nsguard deletes no volume.\n",
            why = comment(&crate::simple_container::releases::why_it_stays()),
            release = comment(&crate::simple_container::releases::release()),
        );
        if !self.options.apply_ready {
            out.push_str("# Each mutating line is a server-side dry run (--dry-run=server) and the checks that\n# need it applied are comments: rerun with --apply-ready to migrate.\n");
        }
        out.push_str(&self.summary);
        out.push_str(
            "\nset -eu

# expect WHAT WANT COMMAND...: go on only if COMMAND prints WANT.
expect() {
  what=$1 want=$2
  shift 2
  got=$(\"$@\") || { echo \"nsguard: could not read $what; stopping\" >&2; exit 1; }
  if [ \"$got\" != \"$want\" ]; then
    echo \"nsguard: $what is '$got', the next step needs '$want'; stopping (nsguard migrate check)\" >&2
    exit 1
  fi
}

# stayed CLAIM FROM VOLUME TO WHY: stop, saying WHY, when claim FROM/CLAIM exists again
# while VOLUME (its data) is reserved for the claim in TO.
stayed() {
  claim=$1 from=$2 volume=$3 to=$4 why=$5
  old=$(kubectl get pvc \"$claim\" -n \"$from\" --ignore-not-found -o name) || { echo \"nsguard: could not read claim $from/$claim; stopping\" >&2; exit 1; }
  waits=$(kubectl get pv \"$volume\" -o 'jsonpath={.spec.claimRef.namespace}') || { echo \"nsguard: could not read volume $volume; stopping\" >&2; exit 1; }
  if [ -n \"$old\" ] && [ \"$waits\" = \"$to\" ]; then
    echo \"nsguard: claim $from/$claim exists again: $why; stopping (nsguard migrate check)\" >&2
    exit 1
  fi
}

# present WHAT COMMAND...: go on only if COMMAND prints something.
present() {
  what=$1
  shift
  got=$(\"$@\") || { echo \"nsguard: could not read $what; stopping\" >&2; exit 1; }
  if [ -z \"$got\" ]; then
    echo \"nsguard: $what does not exist yet; stopping\" >&2
    exit 1
  fi
}

before() {
  :
",
        );
        out.push_str(&self.before);
        out.push_str("}\n\nafter() {\n  :\n");
        out.push_str(&self.after);
        out.push_str(
            "}

case \"${1:-}\" in
  before) before ;;
  after) after ;;
  *)
    echo \"usage: sh $0 before|after (read the comments at the top first)\" >&2
    exit 2
    ;;
esac
",
        );
        out
    }
}

/// The check that `volume` has reclaim policy Retain.
fn retained(volume: &str) -> String {
    format!(
        "expect 'volume {volume} reclaim policy' Retain kubectl get pv '{volume}' -o 'jsonpath={{.spec.persistentVolumeReclaimPolicy}}'"
    )
}

/// Up to ten names, then how many more.
fn list(names: &[String]) -> String {
    let mut shown = names
        .iter()
        .take(10)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > 10 {
        let _ = write!(shown, " and {} more", names.len() - 10);
    }
    shown
}

/// Text for a comment line: one line (control characters escaped), so nothing read from
/// the cluster or a dump can end the comment.
fn comment(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_debug().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// The Pulumi state step of `sub_env`, as comments (its names were checked by [`valid`]),
/// and when not to take it: once a deploy has made the new Namespace, the state holds that
/// one, and forgetting it makes the next deploy fail on the namespace that exists.
fn state_step(sub_env: &SubEnv) -> String {
    let deployments: Vec<String> = sub_env
        .workloads
        .iter()
        .filter_map(|w| w.strip_prefix("Deployment/"))
        .map(str::to_owned)
        .collect();
    let mut step =
        crate::simple_container::releases::StateStep::of(&sub_env.owner, &deployments).comment();
    let _ = writeln!(
        step,
        "#   (skip it when it is done already: when an `sc deploy` made namespace {} and stopped at a\n#   claim nsguard refused, the state holds the new Namespace, and forgetting that one makes the\n#   next deploy fail on the namespace that exists)",
        sub_env.to
    );
    step
}

/// A label value (what the stack's labels hold), not empty.
fn is_label_value(value: &str) -> bool {
    let bytes = value.as_bytes();
    (1..=63).contains(&bytes.len())
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && bytes[0].is_ascii_alphanumeric()
        && bytes[bytes.len() - 1].is_ascii_alphanumeric()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::MisplacedObject;
    use crate::decisions::data_at_risk::{Claim, Volume};
    use crate::migration::sub_envs;
    use crate::simple_container::labels::StackRef;

    /// A sub-env leaving `from` for `to` with a Deployment `web` and claims `(name,
    /// volume, reclaim policy)`, all Bound.
    fn inventory(from: &str, to: &str, app: &str, claims: &[(&str, &str, &str)]) -> Inventory {
        let owner = StackRef {
            app_name: app.into(),
            env: "tenant-a".into(),
            parent_env: "production".into(),
        };
        let object = |api_version: &str, kind: &str, name: &str| MisplacedObject {
            namespace: from.into(),
            api_version: api_version.into(),
            kind: kind.into(),
            name: name.into(),
            owner: owner.clone(),
            target: to.into(),
        };
        let mut inventory = Inventory::default();
        inventory
            .misplaced
            .push(object("apps/v1", "Deployment", "web"));
        for (name, volume, policy) in claims {
            inventory
                .misplaced
                .push(object("v1", "PersistentVolumeClaim", name));
            inventory.claims.push(Claim {
                namespace: from.into(),
                name: (*name).into(),
                volume: Some((*volume).into()),
                owner: Some(crate::simple_container::labels::Owner::new(
                    "shop-tenant-a",
                    "tenant-a",
                )),
                deleted_at: None,
                ephemeral_pod: None,
            });
            inventory
                .volumes
                .insert((*volume).into(), Volume::with_policy(policy));
        }
        inventory
    }

    fn plan(inventory: &Inventory, options: Options) -> Script {
        let (sub_envs, unlabelled) = sub_envs(inventory, &[], &[]);
        render(&sub_envs, &unlabelled, inventory, options)
    }

    /// The plan names a sub-env's ephemeral volumes' claims as left out, and no step
    /// touches them.
    #[test]
    fn the_plan_says_it_leaves_ephemeral_claims_out() {
        let mut inventory = inventory(
            "shop",
            "shop-tenant-a",
            "shop-tenant-a",
            &[("data", "pv-data", "Delete")],
        );
        inventory.claims.push(Claim {
            namespace: "shop".into(),
            name: "web-7f9c-x2k4p-scratch".into(),
            volume: Some("pv-scratch".into()),
            owner: Some(crate::simple_container::labels::Owner::new(
                "shop-tenant-a",
                "tenant-a",
            )),
            deleted_at: None,
            ephemeral_pod: Some("web-7f9c-x2k4p".into()),
        });
        inventory
            .volumes
            .insert("pv-scratch".into(), Volume::with_policy("Delete"));
        let script = plan(&inventory, Options::default()).text;
        assert!(
            script.contains("#   claim web-7f9c-x2k4p-scratch left out: the generic ephemeral volume of Pod web-7f9c-x2k4p"),
            "{script}"
        );
        let touching: Vec<&str> = script
            .lines()
            .filter(|l| !l.trim_start().starts_with('#') && l.contains("scratch"))
            .collect();
        assert!(touching.is_empty(), "{touching:?}");
        parses(&script);
    }

    /// `sh -n`: the script parses as POSIX shell.
    fn parses(script: &str) {
        passes("sh", &["-n"], script);
    }

    /// `tool args` reads `script` from its standard input and accepts it.
    fn passes(tool: &str, args: &[&str], script: &str) {
        use std::io::Write as _;
        let mut sh = std::process::Command::new(tool)
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{tool} on the PATH (tests/run.sh installs it): {e}"));
        sh.stdin
            .take()
            .unwrap()
            .write_all(script.as_bytes())
            .unwrap();
        let out = sh.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{tool}: {}{}\n{script}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The state step's commands for awkward names: an app-name that is the stack alone,
    /// one ending in -<env>, label values with dots, underscores and capitals, a
    /// Deployment named otherwise than the app: each is single-quoted, and the commands
    /// parse (`sh -n`) and pass shellcheck; without a Deployment there is no command.
    #[test]
    fn the_state_step_quotes_awkward_names() {
        for (app, env, deployment, stack) in [
            ("shop", "tenant-a", "web", "shop--tenant-a"),
            (
                "shop-tenant-a",
                "tenant-a",
                "shop-tenant-a",
                "shop--tenant-a",
            ),
            ("Shop_v2.x-a.b_C", "a.b_C", "shop-v2", "Shop_v2.x--a.b_C"),
            ("tenant-a", "tenant-a", "tenant-a", "tenant-a--tenant-a"),
        ] {
            let sub_env = SubEnv {
                owner: StackRef {
                    app_name: app.into(),
                    env: env.into(),
                    parent_env: "production".into(),
                },
                from: "shop".into(),
                to: "shop-tenant-a".into(),
                claims: Vec::new(),
                workloads: vec![format!("Deployment/{deployment}"), "StatefulSet/db".into()],
                others: Vec::new(),
                ephemeral_claims: Vec::new(),
            };
            assert!(valid(&sub_env, &[]).is_ok(), "{app}/{env}");
            let step = state_step(&sub_env);
            assert!(
                step.contains("skip it when it is done already: when an `sc deploy` made namespace shop-tenant-a"),
                "{step}"
            );
            assert!(step.lines().all(|l| l.starts_with('#')), "{step}");
            let commands: Vec<&str> = step
                .lines()
                .filter_map(|l| l.strip_prefix("#   $ "))
                .collect();
            assert_eq!(commands.len(), 3, "{step}");
            assert!(
                commands[0].contains(&format!("--stack '{stack}'"))
                    && commands[1].contains(&format!("--arg name '{deployment}-ns'")),
                "{step}"
            );
            let script = format!("#!/bin/sh\nset -eu\n{}\n", commands.join("\n"));
            parses(&script);
            passes("shellcheck", &["-s", "sh", "-"], &script);
            let without = SubEnv {
                workloads: vec!["StatefulSet/db".into()],
                ..sub_env
            };
            let step = state_step(&without);
            assert!(!step.contains("#   $ "), "{step}");
            assert!(step.contains("--show-urns"), "{step}");
        }
    }

    /// The claim on Retain gets no keeping step, the one on Delete does; both are handed
    /// over; only the Delete one gets its policy back, and only when asked. Dry runs keep
    /// every mutating line a server-side dry run and the checks that need them applied
    /// as comments.
    #[test]
    fn only_the_delete_volume_is_kept_and_restored() {
        let inventory = inventory(
            "shop",
            "shop-tenant-a",
            "shop-tenant-a",
            &[
                ("data", "pv-data", "Delete"),
                ("cache", "pv-cache", "Retain"),
            ],
        );
        for apply_ready in [false, true] {
            for restore_reclaim_policy in [false, true] {
                let options = Options {
                    apply_ready,
                    restore_reclaim_policy,
                };
                let script = plan(&inventory, options);
                assert!(script.refused.is_empty());
                parses(&script.text);
                let text = &script.text;
                let keeps = |volume: &str| {
                    text.lines().any(|l| {
                        l.trim_start()
                            .starts_with(&format!("kubectl patch pv '{volume}' --type=merge"))
                            && l.contains("\"Retain\"")
                    })
                };
                assert!(keeps("pv-data") && !keeps("pv-cache"), "{text}");
                for volume in ["pv-data", "pv-cache"] {
                    assert!(
                        text.contains(&format!("kubectl patch pv '{volume}' --type=json")),
                        "{text}"
                    );
                }
                let restores = text.lines().any(|l| {
                    l.trim_start().starts_with("kubectl patch pv 'pv-data'")
                        && l.contains("\"Delete\"")
                });
                assert_eq!(restores, restore_reclaim_policy, "{text}");
                assert!(!text.lines().any(|l| {
                    l.trim_start().starts_with("kubectl patch pv 'pv-cache'")
                        && l.contains("\"Delete\"")
                }));
                assert!(text.contains("kubectl scale 'deployment/web' -n 'shop' --replicas=0"));
                // Nothing ever deletes a volume; only the old claims are deleted.
                for never in ["delete pv ", "delete pv/", "delete persistentvolume"] {
                    assert!(!text.contains(never), "{text}");
                }
                for line in text.lines().map(str::trim_start) {
                    let mutating = [
                        "kubectl patch",
                        "kubectl annotate",
                        "kubectl scale",
                        "kubectl delete",
                    ]
                    .iter()
                    .any(|m| line.starts_with(m));
                    if mutating {
                        assert_eq!(line.ends_with(" --dry-run=server"), !apply_ready, "{line}");
                    }
                    if line.starts_with("kubectl wait --for=delete") {
                        assert!(
                            apply_ready,
                            "a dry run cannot wait for what it did not do: {line}"
                        );
                    }
                }
                // The old claim is deleted only after its volume is seen kept.
                let position = |needle: &str| {
                    text.find(needle)
                        .unwrap_or_else(|| panic!("{needle}: {text}"))
                };
                assert!(
                    position("kubectl delete pvc 'data'")
                        > position("'pv-data' -o 'jsonpath={.spec.persistentVolumeReclaimPolicy}'")
                );
            }
        }
    }

    /// A name that is not a DNS-1123 label (namespaces) or subdomain (objects) never
    /// becomes a command: the sub-env is not planned at all, and said why.
    #[test]
    fn a_name_that_is_not_a_valid_name_never_reaches_a_command() {
        let hostile = [
            ("shop$(reboot)", "shop-tenant-a", "app", "data", "pv-data"),
            ("shop", "shop tenant", "app", "data", "pv-data"),
            (
                "shop",
                "shop-tenant-a",
                "app",
                "data'; rm -rf / #",
                "pv-data",
            ),
            ("shop", "shop-tenant-a", "app", "data", "pv`id`"),
            ("shop", "shop-tenant-a", "app/x", "data", "pv-data"),
            ("shop", "shop-tenant-a", "app", "Data", "pv-data"),
        ];
        for (from, to, app, claim, volume) in hostile {
            let inventory = inventory(from, to, app, &[(claim, volume, "Delete")]);
            let script = plan(
                &inventory,
                Options {
                    apply_ready: true,
                    restore_reclaim_policy: true,
                },
            );
            assert_eq!(
                script.refused.len(),
                1,
                "{from} {to} {app} {claim} {volume}"
            );
            parses(&script.text);
            let command = script
                .text
                .lines()
                .find(|l| l.trim_start().starts_with("kubectl"));
            assert_eq!(command, None, "a command for an invalid name");
            assert!(script.text.contains("# not planned:"), "{}", script.text);
        }
        // A dotted claim name is a valid subdomain: planned, quoted.
        let inventory = inventory(
            "shop",
            "shop-tenant-a",
            "app",
            &[("data.v2", "pv-data", "Delete")],
        );
        let script = plan(&inventory, Options::default());
        assert!(script.refused.is_empty());
        assert!(
            script
                .text
                .contains("kubectl delete pvc 'data.v2' -n 'shop'")
        );
    }
}
