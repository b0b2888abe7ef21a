//! A CRI client as a kubelet is one (runtime.v1 over containerd's socket):
//! the calls of a pod's life, shared by the integration suite
//! (tests/tests/cri.rs) and `make demo` (the `isoexec-cri-pod` binary).

use std::path::Path;

pub use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;
pub use k8s_cri::v1::*;
use tonic::transport::Channel;

/// A blocking client of the CRI at a unix socket.
pub struct Client {
    pub rt: tokio::runtime::Runtime,
    socket: std::path::PathBuf,
}

impl Client {
    pub fn new(socket: &Path) -> std::io::Result<Self> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        Ok(Client {
            rt,
            socket: socket.to_path_buf(),
        })
    }

    /// A connection to the runtime service.
    pub fn service(&self) -> Result<RuntimeServiceClient<Channel>, String> {
        let channel = self
            .rt
            .block_on(isoexec_daemon::client::channel(self.socket.clone()))
            .map_err(|e| format!("connecting to the CRI at {}: {e}", self.socket.display()))?;
        Ok(RuntimeServiceClient::new(channel))
    }

    /// RunPodSandbox on `handler`, with `pod` as its config: the pod's id.
    pub fn run_pod(&self, handler: &str, pod: &PodSandboxConfig) -> Result<String, tonic::Status> {
        let mut c = self.service().map_err(tonic::Status::unavailable)?;
        Ok(self
            .rt
            .block_on(c.run_pod_sandbox(RunPodSandboxRequest {
                config: Some(pod.clone()),
                runtime_handler: handler.into(),
            }))?
            .into_inner()
            .pod_sandbox_id)
    }

    /// CreateContainer then StartContainer; the container's id, or the
    /// status of the step that failed.
    pub fn start_in(
        &self,
        sb: &str,
        pod: &PodSandboxConfig,
        config: ContainerConfig,
    ) -> Result<String, tonic::Status> {
        let mut c = self.service().map_err(tonic::Status::unavailable)?;
        let id = self
            .rt
            .block_on(c.create_container(CreateContainerRequest {
                pod_sandbox_id: sb.into(),
                config: Some(config),
                sandbox_config: Some(pod.clone()),
            }))?
            .into_inner()
            .container_id;
        self.rt.block_on(c.start_container(StartContainerRequest {
            container_id: id.clone(),
        }))?;
        Ok(id)
    }

    /// ExecSync of `sh -c script`: (stdout, exit code).
    pub fn exec(&self, id: &str, script: &str) -> Result<(String, i32), tonic::Status> {
        let mut c = self.service().map_err(tonic::Status::unavailable)?;
        let r = self
            .rt
            .block_on(c.exec_sync(ExecSyncRequest {
                container_id: id.into(),
                cmd: vec!["sh".into(), "-c".into(), script.into()],
                timeout: 10,
            }))?
            .into_inner();
        Ok((String::from_utf8_lossy(&r.stdout).into_owned(), r.exit_code))
    }

    pub fn status(&self, id: &str) -> Result<ContainerStatus, tonic::Status> {
        let mut c = self.service().map_err(tonic::Status::unavailable)?;
        self.rt
            .block_on(c.container_status(ContainerStatusRequest {
                container_id: id.into(),
                verbose: false,
            }))?
            .into_inner()
            .status
            .ok_or_else(|| tonic::Status::not_found(format!("no status for {id}")))
    }

    /// StopPodSandbox then RemovePodSandbox.
    pub fn remove_pod(&self, sb: &str) -> Result<(), tonic::Status> {
        let mut c = self.service().map_err(tonic::Status::unavailable)?;
        self.rt.block_on(c.stop_pod_sandbox(StopPodSandboxRequest {
            pod_sandbox_id: sb.into(),
        }))?;
        self.rt
            .block_on(c.remove_pod_sandbox(RemovePodSandboxRequest {
                pod_sandbox_id: sb.into(),
            }))?;
        Ok(())
    }
}

/// A pod as the kubelet describes one: `uid` unique, logs under `logs/name`.
pub fn pod_config(name: &str, uid: &str, logs: &Path) -> PodSandboxConfig {
    PodSandboxConfig {
        metadata: Some(PodSandboxMetadata {
            name: name.into(),
            uid: uid.into(),
            namespace: "default".into(),
            attempt: 0,
        }),
        hostname: name.into(),
        log_directory: logs.join(name).display().to_string(),
        linux: Some(LinuxPodSandboxConfig::default()),
        ..Default::default()
    }
}

/// A container of `image` running `cmd`, logging to `name.log`.
pub fn container_config(name: &str, image: &str, cmd: &[&str]) -> ContainerConfig {
    ContainerConfig {
        metadata: Some(ContainerMetadata {
            name: name.into(),
            attempt: 0,
        }),
        image: Some(ImageSpec {
            image: image.into(),
            ..Default::default()
        }),
        command: cmd.iter().map(|s| s.to_string()).collect(),
        log_path: format!("{name}.log"),
        ..Default::default()
    }
}
