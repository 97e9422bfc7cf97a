# Homebrew formula: builds from the release source tarball with cargo, installs the binary,
# the man page and completions generated from the binary itself. Update `url` and `sha256`
# for each release (the release workflow prints the checksums).
class DockerCredentialGcp < Formula
  desc "Docker credential helper for Google Container Registry and Artifact Registry"
  license "MIT"
  url "https://example.invalid/docker-credential-gcp/releases/v0.1.0/docker-credential-gcp-0.1.0.tar.gz"
  sha256 "0000000000000000000000000000000000000000000000000000000000000000"

  depends_on "rust" => :build

  def install
    system "cargo", "install", *std_cargo_args
    (man1/"docker-credential-gcp.1").write Utils.safe_popen_read(bin/"docker-credential-gcp", "manpage")
    generate_completions_from_executable(bin/"docker-credential-gcp", "completions")
  end

  def caveats
    <<~EOS
      Map Google registries to the helper (once per user):
        docker-credential-gcp configure-docker
      and check the set-up with:
        docker-credential-gcp doctor
    EOS
  end

  test do
    assert_match version.to_s, shell_output("#{bin}/docker-credential-gcp version")
    output = pipe_output("#{bin}/docker-credential-gcp get", "quay.io", 1)
    assert_equal "credentials not found in native keychain\n", output
  end
end
