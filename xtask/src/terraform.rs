//! `cargo xtask interop terraform [--bench [--rounds N]]`: the example provider
//! (`examples/terraform-provider-rpcplugin`) under the real Terraform CLI, offline.
//!
//! A temp dir gets a CLI configuration whose `dev_overrides` points
//! `example.com/rpcplugin/rpcplugin` at the freshly built provider, so Terraform runs
//! it with no `terraform init`, no registry and no network. Then the lifecycle:
//! validate, plan, apply, a plan with no changes, drift (an edit, a deleted file),
//! a replacement, import, configuration errors, a provider panic, destroy. After every
//! command: every provider process Terraform started is gone, none of ours runs, and
//! no socket directory is left (the provider makes them in the private `TMPDIR` this
//! run gives Terraform, which passes it on). Terraform always uses AutoMTLS, so every
//! call here went over mutual TLS with Terraform's P-521 client certificate pinned.
//!
//! `--bench` builds the provider in release and prints, over N plans and N applies:
//! the time from Terraform starting a provider process to its first call (from
//! `TF_LOG=trace` timestamps, millisecond resolution), and the commands' wall time.

use anyhow::{Context, Result, bail, ensure};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The provider address the configuration uses and `dev_overrides` maps.
const SOURCE: &str = "example.com/rpcplugin/rpcplugin";

/// The executable name Terraform looks for in the override directory.
const PROVIDER: &str = "terraform-provider-rpcplugin";

/// One Terraform command may take this long; a hung provider fails the step.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(90);

/// What the provider prints on stdout when configured, which must reach
/// Terraform's log over plugin.GRPCStdio.
const STDIO_MARKER: &str = "terraform-provider-rpcplugin: configured by Terraform";

pub(crate) fn run(root: &Path, args: &[String]) -> Result<()> {
    let Some(terraform) = find_on_path("terraform") else {
        eprintln!(
            "\n=====================================================================\n\
             SKIPPED: terraform not found on PATH: the Terraform interop step did not run\n\
             =====================================================================\n"
        );
        return Ok(());
    };
    let bench = args.iter().any(|a| a == "--bench");
    let profile = if bench { "release" } else { "debug" };
    let mut build = vec!["build", "-p", PROVIDER];
    if bench {
        build.push("--release");
    }
    crate::run_cmd(root, "cargo", &build, &[])?;
    let bin_dir = root.join("target").join(profile);
    let world = World::new(terraform, &bin_dir)?;
    if bench {
        let rounds = args
            .iter()
            .position(|a| a == "--rounds")
            .and_then(|i| args.get(i + 1))
            .map(|n| n.parse::<usize>().context("--rounds N"))
            .transpose()?
            .unwrap_or(10);
        return benchmark(&world, rounds);
    }
    let started = Instant::now();
    scenario(&world)?;
    println!(
        "interop terraform: every step passed ({:.1} s)",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
}

/// The temp dir Terraform works in, and how to run it there.
struct World {
    terraform: PathBuf,
    provider: PathBuf,
    dir: tempfile::TempDir,
}

/// What one Terraform command did.
struct Outcome {
    success: bool,
    stdout: String,
    stderr: String,
    log: String,
    wall: Duration,
}

impl Outcome {
    /// Whether Terraform printed `needle`, whitespace compared loosely: Terraform
    /// wraps long messages at 80 columns.
    fn expect(&self, needle: &str) -> Result<()> {
        let squash = |text: &str| text.split_whitespace().collect::<Vec<_>>().join(" ");
        let needle = squash(needle);
        ensure!(
            squash(&self.stdout).contains(&needle) || squash(&self.stderr).contains(&needle),
            "expected {needle:?} in Terraform's output:\n{}\n{}",
            self.stdout,
            self.stderr
        );
        Ok(())
    }
}

impl World {
    fn new(terraform: PathBuf, bin_dir: &Path) -> Result<World> {
        let provider = bin_dir.join(PROVIDER);
        ensure!(provider.is_file(), "{} was not built", provider.display());
        let dir = tempfile::Builder::new().prefix("rpcplugin-tf-").tempdir()?;
        std::fs::create_dir(dir.path().join("files"))?;
        std::fs::create_dir(dir.path().join("tmp"))?;
        std::fs::write(
            dir.path().join("cli.tfrc"),
            format!(
                "provider_installation {{\n  dev_overrides {{ \"{SOURCE}\" = \"{}\" }}\n  direct {{}}\n}}\n",
                bin_dir.display()
            ),
        )?;
        Ok(World {
            terraform,
            provider,
            dir,
        })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn files(&self) -> PathBuf {
        self.path("files")
    }

    /// Writes `main.tf`: the provider rooted in `files/` plus `resources`.
    fn configure(&self, resources: &str) -> Result<()> {
        let main = format!(
            "terraform {{\n  required_providers {{\n    rpcplugin = {{ source = \"{SOURCE}\" }}\n  }}\n}}\n\n\
             provider \"rpcplugin\" {{\n  root = \"{}\"\n}}\n\n{resources}",
            self.files().display()
        );
        std::fs::write(self.path("main.tf"), main)?;
        Ok(())
    }

    /// Runs `terraform ARGS` with the given log level and extra environment, then
    /// checks that nothing of the provider outlived it.
    fn terraform(&self, args: &[&str], log_level: &str, env: &[(&str, &str)]) -> Result<Outcome> {
        let log_path = self.path("terraform.log");
        let _ = std::fs::remove_file(&log_path);
        let mut command = Command::new(&self.terraform);
        command
            .args(args)
            .arg("-no-color")
            .current_dir(self.dir.path())
            .env("TF_CLI_CONFIG_FILE", self.path("cli.tfrc"))
            .env("CHECKPOINT_DISABLE", "1")
            .env("TF_IN_AUTOMATION", "1")
            .env("TF_LOG", log_level)
            .env("TF_LOG_PATH", &log_path)
            // Terraform passes its environment on: the provider makes its socket
            // directory here, where this run can see whether it was removed.
            .env("TMPDIR", self.path("tmp"))
            // The provider logs its socket's path at debug: proof that it was there.
            .env("PLUGIN_LOG_LEVEL", "info,rpcplugin_server=debug")
            .envs(env.iter().copied());
        let started = Instant::now();
        let output = crate::output_with_timeout(&mut command, COMMAND_TIMEOUT)
            .with_context(|| format!("terraform {} (a hung provider?)", args.join(" ")))?;
        let wall = started.elapsed();
        let outcome = Outcome {
            success: output.status.success(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            log: std::fs::read_to_string(&log_path).unwrap_or_default(),
            wall,
        };
        self.check_nothing_left(&outcome)
            .with_context(|| format!("after terraform {}", args.join(" ")))?;
        Ok(outcome)
    }

    /// A step that must succeed and print each of `needles`.
    fn step(&self, name: &str, args: &[&str], needles: &[&str]) -> Result<Outcome> {
        let outcome = self.terraform(args, "debug", &[])?;
        if !outcome.success {
            bail!(
                "{name}: terraform {} failed:\n{}\n{}",
                args.join(" "),
                outcome.stdout,
                outcome.stderr
            );
        }
        for needle in needles {
            outcome.expect(needle).with_context(|| name.to_owned())?;
        }
        eprintln!(
            "PASS  terraform {name} ({:.0} ms, {} provider processes)",
            outcome.wall.as_secs_f64() * 1e3,
            provider_pids(&outcome.log).len()
        );
        Ok(outcome)
    }

    /// A step that must fail and print each of `needles`.
    fn failing_step(
        &self,
        name: &str,
        args: &[&str],
        env: &[(&str, &str)],
        needles: &[&str],
    ) -> Result<Outcome> {
        let outcome = self.terraform(args, "debug", env)?;
        ensure!(
            !outcome.success,
            "{name}: terraform {} succeeded but must fail:\n{}",
            args.join(" "),
            outcome.stdout
        );
        for needle in needles {
            outcome.expect(needle).with_context(|| name.to_owned())?;
        }
        eprintln!(
            "PASS  terraform {name} ({:.0} ms, failed as expected)",
            outcome.wall.as_secs_f64() * 1e3
        );
        Ok(outcome)
    }

    /// Every provider process this command started has exited, no process runs
    /// our provider's executable, and no socket directory is left.
    fn check_nothing_left(&self, outcome: &Outcome) -> Result<()> {
        let pids = provider_pids(&outcome.log);
        // Terraform prints a plugin's log fields in no fixed order.
        let in_tmp = format!("endpoint={}/rpcplugin-", self.path("tmp").display());
        let sockets = outcome
            .log
            .lines()
            .filter(|line| line.contains("plugin address:") && line.contains(&in_tmp))
            .count();
        ensure!(
            sockets == pids.len(),
            "{} provider launches but {sockets} sockets in {}",
            pids.len(),
            self.path("tmp").display()
        );
        for pid in pids {
            ensure!(
                !process_alive(pid),
                "provider process {pid} is still running after Terraform exited"
            );
        }
        let running = processes_running(&self.provider);
        ensure!(
            running.is_empty(),
            "processes running {}: {running:?}",
            self.provider.display()
        );
        let left: Vec<String> = std::fs::read_dir(self.path("tmp"))?
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with("rpcplugin-"))
            .collect();
        ensure!(left.is_empty(), "socket directories left behind: {left:?}");
        Ok(())
    }
}

/// The pids of the provider processes Terraform started, from its debug log
/// (go-plugin: `plugin started: path=... pid=N`).
fn provider_pids(log: &str) -> Vec<u32> {
    log.lines()
        .filter(|line| line.contains("plugin started:") && line.contains(PROVIDER))
        .filter_map(|line| line.rsplit("pid=").next()?.trim().parse().ok())
        .collect()
}

/// Whether `pid` is a live process (a zombie is dead: only its exit status is left).
fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// The pids of live processes whose executable is `exe`.
fn processes_running(exe: &Path) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_link(format!("/proc/{pid}/exe")).is_ok_and(|target| target == exe)
                && process_alive(*pid)
        })
        .collect()
}

/// SHA-256 of `"hello\n"` (`printf 'hello\n' | sha256sum`), what the plan must show
/// for `rpcplugin_file.a` before anything is written.
const HELLO_SHA256: &str = "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03";

/// The configuration of the lifecycle: a file, a file whose content is unknown
/// until apply (from a built-in resource), a data source reading a file made
/// outside Terraform.
fn resources(a_path: &str) -> String {
    format!(
        r#"resource "rpcplugin_file" "a" {{
  path    = "{a_path}"
  content = "hello\n"
}}

resource "terraform_data" "seed" {{
  input = "seed"
}}

resource "rpcplugin_file" "b" {{
  path        = "b.txt"
  content     = terraform_data.seed.id
  permissions = "0600"
}}

data "rpcplugin_file" "motd" {{
  path = "motd"
}}

output "motd" {{
  value = data.rpcplugin_file.motd.content
}}
"#
    )
}

const IMPORTED: &str = r#"
resource "rpcplugin_file" "imported" {
  path    = "imported.txt"
  content = "made outside\n"
}
"#;

fn mode(path: &Path) -> Result<u32> {
    use std::os::unix::fs::PermissionsExt;
    Ok(std::fs::metadata(path)?.permissions().mode() & 0o7777)
}

fn scenario(world: &World) -> Result<()> {
    let files = world.files();
    std::fs::write(files.join("motd"), "good morning\n")?;
    world.configure(&resources("a.txt"))?;

    world.step("validate", &["validate"], &["The configuration is valid"])?;

    let plan = world.step(
        "plan",
        &["plan"],
        &[
            "rpcplugin_file.a will be created",
            &format!("sha256      = \"{HELLO_SHA256}\""),
            "permissions = \"0644\"",
            // b's content comes from terraform_data.seed.id: unknown until apply.
            "content     = (known after apply)",
            "Plan: 3 to add",
        ],
    )?;
    ensure!(
        provider_pids(&plan.log).len() >= 2,
        "plan started fewer provider processes than expected"
    );

    let apply = world.step(
        "apply",
        &["apply", "-auto-approve"],
        &["Apply complete! Resources: 3 added", "good morning"],
    )?;
    ensure!(std::fs::read_to_string(files.join("a.txt"))? == "hello\n");
    ensure!(mode(&files.join("a.txt"))? == 0o644);
    ensure!(mode(&files.join("b.txt"))? == 0o600);
    ensure!(
        std::fs::read_to_string(files.join("b.txt"))?.len() == 36,
        "b.txt should hold terraform_data's id (a UUID)"
    );
    // GRPCStdio: the provider's stdout reached Terraform over plugin.GRPCStdio.
    // go-plugin's stdio client logs as `provider.stdio`; Terraform logs each line
    // it hands over as `unexpected data: PROVIDER:stdout="LINE"`.
    ensure!(
        apply.log.contains("provider.stdio")
            && apply
                .log
                .lines()
                .any(|line| line.contains(":stdout=") && line.contains(STDIO_MARKER)),
        "the provider's stdout did not reach Terraform's log over GRPCStdio"
    );
    ensure!(
        apply.log.contains("configuring client automatic mTLS")
            && apply.log.contains("using plugin: version=6"),
        "Terraform did not use AutoMTLS and protocol 6"
    );
    eprintln!("PASS  terraform GRPCStdio: the provider's stdout is in TF_LOG (provider.stdio)");

    world.step("plan without changes", &["plan"], &["No changes."])?;

    std::fs::write(files.join("a.txt"), "edited outside\n")?;
    std::fs::set_permissions(
        files.join("a.txt"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )?;
    world.step(
        "plan after an edit and a chmod outside Terraform",
        &["plan"],
        &[
            "rpcplugin_file.a will be updated in-place",
            "edited outside",
            // The configuration leaves permissions out: back to the default.
            "~ permissions = \"0600\" -> \"0644\"",
            "Plan: 0 to add, 1 to change, 0 to destroy",
        ],
    )?;

    world.configure(&resources("a2.txt"))?;
    world.step(
        "plan after a path change",
        &["plan"],
        &[
            "rpcplugin_file.a must be replaced",
            "# forces replacement",
            "Plan: 1 to add, 0 to change, 1 to destroy",
        ],
    )?;
    world.configure(&resources("a.txt"))?;

    std::fs::remove_file(files.join("b.txt"))?;
    world.step(
        "plan after a file was removed outside Terraform",
        &["plan"],
        &[
            "rpcplugin_file.b will be created",
            "Plan: 1 to add, 1 to change, 0 to destroy",
        ],
    )?;
    world.step(
        "apply restores both files",
        &["apply", "-auto-approve"],
        &["Resources: 1 added, 1 changed, 0 destroyed"],
    )?;
    ensure!(std::fs::read_to_string(files.join("a.txt"))? == "hello\n");
    ensure!(
        mode(&files.join("a.txt"))? == 0o644,
        "apply did not restore a.txt's mode"
    );
    ensure!(files.join("b.txt").exists());

    std::fs::write(files.join("imported.txt"), "made outside\n")?;
    world.configure(&(resources("a.txt") + IMPORTED))?;
    world.step(
        "import",
        &["import", "rpcplugin_file.imported", "imported.txt"],
        &["Import successful!"],
    )?;
    world.step("plan after import", &["plan"], &["No changes."])?;

    let bad_permissions = r#"
resource "rpcplugin_file" "bad" {
  path        = "bad.txt"
  content     = "x"
  permissions = "0999"
}
"#;
    world.configure(&(resources("a.txt") + IMPORTED + bad_permissions))?;
    world.failing_step(
        "validate with bad permissions",
        &["validate"],
        &[],
        &[
            "Error: Invalid permissions",
            "with rpcplugin_file.bad",
            "permissions = \"0999\"",
            "\"0999\" is not a file mode",
        ],
    )?;
    let outside = r#"
resource "rpcplugin_file" "outside" {
  path    = "../outside.txt"
  content = "x"
}
"#;
    world.configure(&(resources("a.txt") + IMPORTED + outside))?;
    world.failing_step(
        "plan with a path outside the root",
        &["plan"],
        &[],
        &[
            "Error: Path outside the provider's root",
            "with rpcplugin_file.outside",
            "path    = \"../outside.txt\"",
        ],
    )?;
    ensure!(!world.path("outside.txt").exists());
    world.configure(&(resources("a.txt") + IMPORTED))?;

    // A provider bug: Terraform gets an error naming the call, at once, not a hang
    // (the command's time limit would fail this step).
    world.failing_step(
        "plan with a provider that panics in ReadDataSource",
        &["plan"],
        &[("TF_RPCPLUGIN_TEST_PANIC", "ReadDataSource")],
        &[
            "Error: Plugin error",
            "code = Internal",
            "ReadDataSource panicked on purpose",
        ],
    )?;

    world.step(
        "destroy",
        &["destroy", "-auto-approve"],
        &["Destroy complete! Resources: 4 destroyed"],
    )?;
    for name in ["a.txt", "b.txt", "imported.txt"] {
        ensure!(
            !files.join(name).exists(),
            "{name} is still there after destroy"
        );
    }
    ensure!(
        files.join("motd").exists(),
        "destroy removed a file it did not manage"
    );
    Ok(())
}

/// Launch-to-first-call times and wall times over `rounds` plans and applies.
///
/// Each round runs a plan and an apply from an empty state three times: with
/// `TF_LOG=trace` for the launch times, then with logging off for the wall times
/// (logging slows Terraform down), then the same without our provider (only
/// Terraform's built-in `terraform_data`) for what Terraform alone costs.
fn benchmark(world: &World, rounds: usize) -> Result<()> {
    std::fs::write(world.files().join("motd"), "good morning\n")?;
    let plan_and_apply = |log_level: &str| -> Result<(Outcome, Outcome)> {
        let _ = std::fs::remove_file(world.path("terraform.tfstate"));
        for name in ["a.txt", "b.txt"] {
            let _ = std::fs::remove_file(world.files().join(name));
        }
        let plan = world.terraform(&["plan"], log_level, &[])?;
        ensure!(plan.success, "plan failed:\n{}", plan.stderr);
        let apply = world.terraform(&["apply", "-auto-approve"], log_level, &[])?;
        ensure!(apply.success, "apply failed:\n{}", apply.stderr);
        Ok((plan, apply))
    };
    let ms = |outcome: &Outcome| outcome.wall.as_secs_f64() * 1e3;
    let (mut first_call, mut handshake) = (Vec::new(), Vec::new());
    let (mut plan_wall, mut apply_wall) = (Vec::new(), Vec::new());
    let (mut bare_plan, mut bare_apply) = (Vec::new(), Vec::new());
    for round in 1..=rounds {
        world.configure(&resources("a.txt"))?;
        let (plan, apply) = plan_and_apply("trace")?;
        first_call.extend(launch_to_first_call(&plan.log));
        first_call.extend(launch_to_first_call(&apply.log));
        handshake.extend(exec_to_handshake(&plan.log));
        handshake.extend(exec_to_handshake(&apply.log));
        let (plan, apply) = plan_and_apply("")?;
        plan_wall.push(ms(&plan));
        apply_wall.push(ms(&apply));
        // No provider block either: Terraform would start a declared provider.
        std::fs::write(world.path("main.tf"), BUILT_IN_ONLY)?;
        let (plan, apply) = plan_and_apply("")?;
        bare_plan.push(ms(&plan));
        bare_apply.push(ms(&apply));
        eprintln!(
            "round {round}: plan {:.0} ms, apply {:.0} ms; Terraform alone {:.0} ms, {:.0} ms",
            plan_wall[round - 1],
            apply_wall[round - 1],
            bare_plan[round - 1],
            bare_apply[round - 1]
        );
    }
    ensure!(
        !first_call.is_empty(),
        "no provider launch found in the logs"
    );
    let launches = first_call.len();
    println!(
        "terraform bench ({rounds} rounds of plan + apply, release provider):\n  \
         launch -> first call: median {:.1} ms over {launches} provider launches \
         (TF_LOG=trace timestamps, 1 ms resolution)\n  \
         of which exec -> handshake line read: median {:.1} ms\n  \
         plan wall time:  median {:.0} ms (Terraform alone: {:.0} ms)\n  \
         apply wall time: median {:.0} ms (Terraform alone: {:.0} ms)",
        median(&mut first_call),
        median(&mut handshake),
        median(&mut plan_wall),
        median(&mut bare_plan),
        median(&mut apply_wall),
        median(&mut bare_apply),
    );
    Ok(())
}

/// The benchmark's baseline: the same shape of configuration with no provider
/// process (Terraform's built-in provider runs inside Terraform).
const BUILT_IN_ONLY: &str = r#"
resource "terraform_data" "a" {
  input = "hello\n"
}

resource "terraform_data" "seed" {
  input = "seed"
}

resource "terraform_data" "b" {
  input = terraform_data.seed.id
}
"#;

/// For each provider launch in a trace log: milliseconds from go-plugin's
/// `starting plugin` line to the first `GRPCProvider.v6:` call after it.
fn launch_to_first_call(log: &str) -> Vec<f64> {
    intervals(log, "provider: starting plugin:", "GRPCProvider.v6:")
}

/// For each provider launch: milliseconds from the process running (`plugin
/// started`, after the exec) to Terraform having its handshake line (`using
/// plugin`): the provider's own start-up as Terraform sees it.
fn exec_to_handshake(log: &str) -> Vec<f64> {
    intervals(log, "provider: plugin started:", "provider: using plugin:")
}

/// Milliseconds from each line with `from` (about our provider) to the next line
/// with `to`.
fn intervals(log: &str, from: &str, to: &str) -> Vec<f64> {
    let mut times = Vec::new();
    let mut started: Option<f64> = None;
    for line in log.lines() {
        if line.contains(from) && line.contains(PROVIDER) {
            started = timestamp_ms(line);
        } else if line.contains(to)
            && let (Some(start), Some(now)) = (started, timestamp_ms(line))
        {
            times.push(now - start);
            started = None;
        }
    }
    times
}

/// Milliseconds since midnight of a log line's `2026-12-04T18:12:15.366Z` stamp.
fn timestamp_ms(line: &str) -> Option<f64> {
    let time = line.get(11..23)?;
    let mut parts = time.split([':', '.']);
    let mut next = || parts.next()?.parse::<f64>().ok();
    let (h, m, s, ms) = (next()?, next()?, next()?, next()?);
    Some(((h * 60.0 + m) * 60.0 + s) * 1e3 + ms)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len().is_multiple_of(2) {
        (values[mid - 1] + values[mid]) / 2.0
    } else {
        values[mid]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_processes_are_found_and_reaped_ones_are_not() {
        assert!(process_alive(std::process::id()));
        let me = std::env::current_exe().unwrap();
        assert!(processes_running(&me).contains(&std::process::id()));
        let mut child = Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert!(!process_alive(pid));
    }

    #[test]
    fn launch_times_come_from_the_trace_log() {
        let log = "\
2026-12-04T18:12:46.712Z [DEBUG] provider: starting plugin: path=/x/terraform-provider-rpcplugin args=[]
2026-12-04T18:12:46.714Z [DEBUG] provider: plugin started: path=/x/terraform-provider-rpcplugin pid=42
2026-12-04T18:12:46.726Z [TRACE] GRPCProvider.v6: GetProviderSchema
2026-12-04T18:12:46.727Z [TRACE] GRPCProvider.v6: Close
2026-12-04T18:12:59.999Z [DEBUG] provider: starting plugin: path=/x/terraform-provider-rpcplugin args=[]
2026-12-04T18:13:00.009Z [TRACE] GRPCProvider.v6: GetProviderSchema
";
        assert_eq!(launch_to_first_call(log), vec![14.0, 10.0]);
        let handshake = "\
2026-12-04T18:12:46.714Z [DEBUG] provider: plugin started: path=/x/terraform-provider-rpcplugin pid=42
2026-12-04T18:12:46.717Z [DEBUG] provider: using plugin: version=6
";
        assert_eq!(exec_to_handshake(handshake), vec![3.0]);
        assert_eq!(provider_pids(log), vec![42]);
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
    }
}
