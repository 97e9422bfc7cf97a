//! Windows job objects: a child and everything it starts (cmd.exe running `gcloud.cmd`, and the
//! python under it) are killed together at the deadline, and with us if we die.
//!
//! The child is assigned right after it is spawned: std cannot create a process inside a job,
//! and cmd.exe needs milliseconds before it starts anything, so the microsecond window is
//! closed long before a grandchild exists. If the assignment fails (a parent job that forbids
//! nesting, before Windows 8), only the child itself can be killed.

use std::os::windows::io::AsRawHandle;
use std::process::Child;

use windows_sys::Win32::Foundation::{CloseHandle, HANDLE};
use windows_sys::Win32::System::JobObjects::{
    AssignProcessToJobObject, CreateJobObjectW, JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE,
    JOBOBJECT_EXTENDED_LIMIT_INFORMATION, JobObjectExtendedLimitInformation,
    SetInformationJobObject, TerminateJobObject,
};

pub(crate) struct Job(HANDLE);

impl Job {
    /// A job holding `child` that kills everything in it when closed; `None` if that failed.
    pub(crate) fn assign(child: &Child) -> Option<Job> {
        // SAFETY: both arguments may be null (default security, unnamed job).
        let handle = unsafe { CreateJobObjectW(std::ptr::null(), std::ptr::null()) };
        if handle.is_null() {
            log::debug!("no job object: {}", std::io::Error::last_os_error());
            return None;
        }
        let job = Job(handle);
        let mut info = JOBOBJECT_EXTENDED_LIMIT_INFORMATION::default();
        info.BasicLimitInformation.LimitFlags = JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE;
        // SAFETY: `info` is a valid JOBOBJECT_EXTENDED_LIMIT_INFORMATION of the given size.
        let set = unsafe {
            SetInformationJobObject(
                job.0,
                JobObjectExtendedLimitInformation,
                (&raw const info).cast(),
                size_of_val(&info) as u32,
            )
        };
        // SAFETY: the child's handle is open for as long as `child` lives.
        let assigned = set != 0
            && unsafe { AssignProcessToJobObject(job.0, child.as_raw_handle() as HANDLE) } != 0;
        if !assigned {
            log::debug!(
                "the child could not join a job object: {}",
                std::io::Error::last_os_error()
            );
            return None;
        }
        Some(job)
    }

    /// Kills every process in the job.
    pub(crate) fn terminate(&self) {
        // SAFETY: self.0 is an open job handle.
        unsafe {
            TerminateJobObject(self.0, 1);
        }
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        // SAFETY: self.0 is an open handle owned by this value. Closing the last handle of a
        // KILL_ON_JOB_CLOSE job ends its processes too.
        unsafe {
            CloseHandle(self.0);
        }
    }
}
