import Foundation
import KilnMPI

/// Runs a command's work on every rank of `mpirun`: only rank 0 speaks (the others' standard output goes
/// nowhere; errors still reach standard error), an error on any rank ends the whole job (the others would
/// wait for it in their next collective), and MPI is finalised after the work.
func onEveryRank(_ body: (MPICommunicator) throws -> Void) throws {
    let comm = try MPICommunicator.shared()
    if comm.rank != 0 { silenceStandardOutput() }
    do {
        try body(comm)
    } catch {
        FileHandle.standardError.write(Data("kiln: error on rank \(comm.rank) of \(comm.size): \(error)\n".utf8))
        comm.abort(1)
    }
    comm.finalize()
}

/// Sends this process's standard output to /dev/null.
private func silenceStandardOutput() {
    fflush(nil)
    let null = open("/dev/null", O_WRONLY)
    guard null >= 0 else { return }
    dup2(null, 1)
    close(null)
}
