//! The outbound subcommands: `call`, `notify`, `verify-code`, `stop`, `recording`. Each places
//! one request through [`PlatformClient`], records it in `placed_calls`, prints the result, and
//! exits non-zero on failure with the platform's code and its meaning.

use std::{io::Write, path::Path, process::ExitCode};

use clap::{ArgGroup, Args, Subcommand};

use super::{
    CallAccepted, CalleeMedia, ClickToCall, Error, LastMinToUe, PlatformClient, PlayContentInfo,
    RecordingFile, StopCall, VerificationCode, VoiceNotification,
};
use crate::{config::Config, store};

#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Click-to-call: the platform calls --caller, then connects --callee.
    Call(CallArgs),
    /// Voice notification: call --callee and play a TTS template or an audio file.
    Notify(NotifyArgs),
    /// Voice verification code: call --callee and speak --code.
    VerifyCode(VerifyArgs),
    /// Stop a call in progress (both parties are released).
    Stop(StopArgs),
    /// Get the download link of a click-to-call recording, optionally downloading it.
    Recording(RecordingArgs),
}

/// Options every call-placing command shares. Numbers are in global form: +, country code, number.
#[derive(Debug, Args)]
pub struct Common {
    /// The [[apps]] key to act for [default: platform.default_app, else the only app].
    #[arg(long, value_name = "KEY")]
    pub app: Option<String>,
    /// Status callback URL [default: public_base_url + /voicecall/status; none if that is empty].
    #[arg(long, value_name = "URL")]
    pub status_url: Option<String>,
    /// CDR callback URL [default: public_base_url + /voicecall/fee; none if that is empty].
    #[arg(long, value_name = "URL")]
    pub fee_url: Option<String>,
    /// Opaque text (at most 256 characters) echoed in every callback of the call.
    #[arg(long, value_name = "TEXT")]
    pub user_data: Option<String>,
    /// Ask for the number of idle call ports in the answer.
    #[arg(long)]
    pub return_idle_port: bool,
    /// Legacy CallEnabler business number (bindNbr).
    #[arg(long, value_name = "NUMBER")]
    pub bind_nbr: Option<String>,
}

#[derive(Debug, Args)]
pub struct CallArgs {
    /// A: the number called first (callerNbr).
    #[arg(long, value_name = "NUMBER")]
    pub caller: String,
    /// B: the number connected once A answers (calleeNbr).
    #[arg(long, value_name = "NUMBER")]
    pub callee: String,
    /// Number shown to A: a fixed-line number of the console (displayNbr).
    #[arg(long, value_name = "NUMBER")]
    pub display: String,
    /// Number shown to B (displayCalleeNbr) [default: --display].
    #[arg(long, value_name = "NUMBER")]
    pub display_callee: Option<String>,
    /// Longest talk time in minutes after B answers, 0-1440 (0: no limit).
    #[arg(long, value_name = "MINUTES")]
    pub max_duration: Option<u32>,
    /// Audio file played in the last minute (needs --max-duration).
    #[arg(long, value_name = "FILE")]
    pub last_min_voice: Option<String>,
    /// Who hears the last-minute tone.
    #[arg(long, value_name = "WHO")]
    pub last_min_to: Option<LastMinToUe>,
    /// Audio file played to A after A answers, before B is dialled (sets playPreVoice).
    #[arg(long, value_name = "FILE")]
    pub pre_voice: Option<String>,
    /// Waiting tone for A.
    #[arg(long, value_name = "FILE")]
    pub wait_voice: Option<String>,
    /// How media is played to B.
    #[arg(long, value_name = "HOW")]
    pub callee_media: Option<CalleeMedia>,
    /// Record the call (recording must be enabled on the application).
    #[arg(long)]
    pub record: bool,
    /// Recording announcement (needs --record).
    #[arg(long, value_name = "FILE")]
    pub record_hint_tone: Option<String>,
    /// Have disconnect events say who hung up (partyType).
    #[arg(long)]
    pub party_type_in_disconnect: bool,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("content").required(true).args(["template_id", "voice"])))]
pub struct NotifyArgs {
    /// The number to call (calleeNbr).
    #[arg(long, value_name = "NUMBER")]
    pub callee: String,
    /// Number shown to the callee: a fixed-line number of the console (displayNbr).
    #[arg(long, value_name = "NUMBER")]
    pub display: String,
    /// Approved TTS template to play.
    #[arg(long, value_name = "ID")]
    pub template_id: Option<String>,
    /// A value of the template's variables, in order; repeat for each.
    #[arg(long = "template-param", value_name = "P", requires = "template_id")]
    pub template_params: Vec<String>,
    /// Approved audio file to play (instead of a template).
    #[arg(long, value_name = "FILE")]
    pub voice: Option<String>,
    /// Digits to collect after playing, 0-32 (the result arrives as a collectInfo event).
    #[arg(long, value_name = "N")]
    pub collect: Option<u32>,
    /// Play again after collecting (needs --collect).
    #[arg(long)]
    pub replay_after_collection: bool,
    /// Play again only when the collected digits equal these (needs --replay-after-collection).
    #[arg(long, value_name = "DIGITS")]
    pub replay_when: Option<String>,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The number to call (calleeNbr).
    #[arg(long, value_name = "NUMBER")]
    pub callee: String,
    /// Number shown to the callee: a fixed-line number of the console (displayNbr).
    #[arg(long, value_name = "NUMBER")]
    pub display: String,
    /// The code to speak: 1-8 digits.
    #[arg(long, value_name = "DIGITS")]
    pub code: String,
    /// Language of the spoken code (languageType; the official sample uses 2).
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub language: u32,
    /// Approved audio played before the code.
    #[arg(long, value_name = "FILE")]
    pub pre_tone: String,
    /// Approved audio played after the code.
    #[arg(long, value_name = "FILE")]
    pub pos_tone: Option<String>,
    /// How many times to play, 0-9 (0: until hung up) [platform default: 3].
    #[arg(long, value_name = "N")]
    pub times: Option<u32>,
    #[command(flatten)]
    pub common: Common,
}

#[derive(Debug, Args)]
pub struct StopArgs {
    /// The call's sessionId, as printed when it was placed.
    pub session_id: String,
    /// The [[apps]] key to act for [default: platform.default_app, else the only app].
    #[arg(long, value_name = "KEY")]
    pub app: Option<String>,
}

#[derive(Debug, Args)]
pub struct RecordingArgs {
    /// recordObjectName of the call's CDR.
    pub file_name: String,
    /// recordDomain of the call's CDR.
    pub record_domain: String,
    /// Also download the recording (.wav) to PATH.
    #[arg(long, value_name = "PATH")]
    pub download: Option<std::path::PathBuf>,
    /// The [[apps]] key to act for [default: platform.default_app, else the only app].
    #[arg(long, value_name = "KEY")]
    pub app: Option<String>,
}

/// Runs one outbound command: prints the result on stdout, or the failure on stderr and exits 1.
pub async fn run(command: ClientCommand, config: Config) -> ExitCode {
    match execute(command, &config).await {
        Ok(report) => {
            println!("{report}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("callhook: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn execute(command: ClientCommand, config: &Config) -> Result<String, String> {
    let pool = store::connect(&config.database)
        .await
        .map_err(|e| format!("{e} (nothing was sent: placed calls must be recorded)"))?;
    if config.database.migrate_on_start {
        store::migrate(&pool).await.map_err(|e| e.to_string())?;
    }
    let client = PlatformClient::new(config, pool.clone()).map_err(|e| e.to_string())?;
    let result = match command {
        ClientCommand::Call(args) => call(&client, args).await.map_err(failure),
        ClientCommand::Notify(args) => notify(&client, args).await.map_err(failure),
        ClientCommand::VerifyCode(args) => verify(&client, args).await.map_err(failure),
        ClientCommand::Stop(args) => stop(&client, args).await.map_err(failure),
        ClientCommand::Recording(args) => recording(&client, config, args).await,
    };
    pool.close().await;
    result
}

/// The error, and when the call may have been placed all the same, what to do about it.
fn failure(error: Error) -> String {
    let mut message = error.to_string();
    if error.may_have_placed_call() {
        message.push_str(
            "\ncallhook: the request may have reached the platform: look for the call's \
             callbacks before trying again",
        );
    }
    message
}

async fn call(client: &PlatformClient, args: CallArgs) -> Result<String, Error> {
    let app = client.app_key(args.common.app.as_deref())?.to_owned();
    let request = ClickToCall {
        display_callee_nbr: args.display_callee.unwrap_or_else(|| args.display.clone()),
        display_nbr: args.display,
        caller_nbr: args.caller,
        callee_nbr: args.callee,
        bind_nbr: args.common.bind_nbr,
        max_duration: args.max_duration,
        last_min_voice: args.last_min_voice,
        last_min_to_ue: args.last_min_to,
        play_pre_voice: args.pre_voice.as_ref().map(|_| true),
        pre_voice: args.pre_voice,
        wait_voice: args.wait_voice,
        callee_media: args.callee_media,
        status_url: args.common.status_url,
        fee_url: args.common.fee_url,
        record_flag: args.record.then_some(true),
        record_hint_tone: args.record_hint_tone,
        party_type_required_in_disconnect: args.party_type_in_disconnect.then_some(true),
        return_idle_port: args.common.return_idle_port.then_some(true),
        user_data: args.common.user_data,
    };
    client.click_to_call(&app, request).await.map(placed)
}

async fn notify(client: &PlatformClient, args: NotifyArgs) -> Result<String, Error> {
    let app = client.app_key(args.common.app.as_deref())?.to_owned();
    let segment = PlayContentInfo {
        notify_voice: args.voice,
        template_id: args.template_id,
        template_paras: args.template_params,
        collect_ind: args.collect,
        replay_after_collection: args.replay_after_collection.then_some(true),
        collect_content_trigger_replaying: args.replay_when,
    };
    let request = VoiceNotification {
        display_nbr: args.display,
        callee_nbr: args.callee,
        play_info_list: vec![segment],
        bind_nbr: args.common.bind_nbr,
        status_url: args.common.status_url,
        fee_url: args.common.fee_url,
        return_idle_port: args.common.return_idle_port.then_some(true),
        user_data: args.common.user_data,
    };
    client.notify(&app, request).await.map(placed)
}

async fn verify(client: &PlatformClient, args: VerifyArgs) -> Result<String, Error> {
    let app = client.app_key(args.common.app.as_deref())?.to_owned();
    let request = VerificationCode {
        display_nbr: args.display,
        callee_nbr: args.callee,
        language_type: args.language,
        pre_tone: args.pre_tone,
        verify_code: args.code,
        pos_tone: args.pos_tone,
        times: args.times,
        bind_nbr: args.common.bind_nbr,
        status_url: args.common.status_url,
        fee_url: args.common.fee_url,
        return_idle_port: args.common.return_idle_port.then_some(true),
        user_data: args.common.user_data,
    };
    client.verify_code(&app, request).await.map(placed)
}

async fn stop(client: &PlatformClient, args: StopArgs) -> Result<String, Error> {
    let app = client.app_key(args.app.as_deref())?.to_owned();
    let stopped = client
        .stop_call(&app, StopCall::new(args.session_id))
        .await?;
    Ok(format!(
        "stopped: sessionId={}{}",
        stopped.session_id,
        recorded(stopped.placed_call_id)
    ))
}

async fn recording(
    client: &PlatformClient,
    config: &Config,
    args: RecordingArgs,
) -> Result<String, String> {
    let app = client.app_key(args.app.as_deref()).map_err(failure)?;
    let file = RecordingFile {
        file_name: args.file_name,
        record_domain: args.record_domain,
    };
    let link = client.recording_link(app, file).await.map_err(failure)?;
    let mut report = format!(
        "recording link: {}{}",
        link.url,
        recorded(link.placed_call_id)
    );
    if let Some(path) = args.download {
        let bytes = download(config, &link.url, &path)
            .await
            .map_err(|e| format!("{report}\ndownloading the recording failed: {e}"))?;
        report.push_str(&format!("\ndownloaded {bytes} bytes to {}", path.display()));
    }
    Ok(report)
}

fn placed(call: CallAccepted) -> String {
    let idle = call
        .idle_port
        .map(|n| format!(" idlePort={n}"))
        .unwrap_or_default();
    format!(
        "placed: sessionId={}{idle}{}",
        call.session_id,
        recorded(call.placed_call_id)
    )
}

fn recorded(id: Option<uuid::Uuid>) -> String {
    match id {
        Some(id) => format!(" (recorded as placed_calls {id})"),
        None => " (NOT recorded in placed_calls: see the log)".to_owned(),
    }
}

/// Fetches `url` (an ordinary client: redirects followed) into `path`, through `path.part` so an
/// interrupted download leaves no truncated file under the final name.
async fn download(
    config: &Config,
    url: &str,
    path: &Path,
) -> Result<u64, Box<dyn std::error::Error>> {
    let http = reqwest::Client::builder()
        .connect_timeout(config.platform.connect_timeout())
        .read_timeout(config.platform.timeout())
        .build()?;
    let mut response = http.get(url).send().await?;
    if !response.status().is_success() {
        return Err(format!("HTTP {}", response.status()).into());
    }
    let mut partial = path.as_os_str().to_owned();
    partial.push(".part");
    let mut file = std::fs::File::create(&partial)?;
    let mut written = 0;
    while let Some(chunk) = response.chunk().await? {
        file.write_all(&chunk)?;
        written += chunk.len() as u64;
    }
    file.sync_all()?;
    drop(file);
    std::fs::rename(&partial, path)?;
    Ok(written)
}
