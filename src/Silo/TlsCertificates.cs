using System.Net.Security;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using Orleans.Connections.Security;
using Orleans.Hosting;

namespace Influence.Silo;

/// <summary>TLS files that cannot be used (missing, unreadable, not PEM, key not matching).</summary>
public sealed class TlsSettingsException(string message) : Exception(message);

/// <summary>
/// Mutual TLS between silos and between clients and gateways (section "Tls" of a silo; the client's
/// $INFLUENCE_TLS_CERT, $INFLUENCE_TLS_KEY, $INFLUENCE_TLS_CA). Every party presents a certificate
/// and accepts a remote one only if it chains to the trusted CA (<see cref="CaFile"/>; by default
/// the party's own certificate, so one shared self-signed certificate is enough for a small
/// cluster) and is meant for both TLS server and client authentication (extended key usage). Host
/// names are not checked: silos are reached by IP address, so the CA should be the cluster's own.
/// </summary>
public sealed class TlsSettings
{
    /// <summary>PEM certificate this party presents (a Kubernetes TLS Secret's tls.crt).</summary>
    public string? CertificateFile { get; set; }
    /// <summary>PEM private key of the certificate (tls.key).</summary>
    public string? KeyFile { get; set; }
    /// <summary>PEM certificate(s) of the CA that remote certificates must chain to (ca.crt); default the certificate itself.</summary>
    public string? CaFile { get; set; }

    public bool Enabled => !string.IsNullOrWhiteSpace(CertificateFile);

    /// <param name="nameOf">How a property is called where it was set (Tls:KeyFile for a silo, $INFLUENCE_TLS_KEY for the client).</param>
    public IEnumerable<string> Problems(Func<string, string> nameOf)
    {
        if (Enabled && string.IsNullOrWhiteSpace(KeyFile)) yield return $"{nameOf(nameof(CertificateFile))} is set but {nameOf(nameof(KeyFile))} is not";
        if (!Enabled && (!string.IsNullOrWhiteSpace(KeyFile) || !string.IsNullOrWhiteSpace(CaFile)))
            yield return $"{nameOf(nameof(KeyFile))} or {nameOf(nameof(CaFile))} is set but {nameOf(nameof(CertificateFile))} is not";
    }
}

/// <summary>The loaded certificate and trust anchors of <see cref="TlsSettings"/>.</summary>
public sealed class TlsCertificates
{
    private TlsCertificates(X509Certificate2 certificate, X509Certificate2Collection trusted)
    {
        Certificate = certificate;
        Trusted = trusted;
    }

    public X509Certificate2 Certificate { get; }
    public X509Certificate2Collection Trusted { get; }

    public static TlsCertificates Load(TlsSettings settings)
    {
        var certFile = settings.CertificateFile!;
        var keyFile = settings.KeyFile!;
        foreach (var f in new[] { certFile, keyFile, settings.CaFile }.OfType<string>())
            if (!File.Exists(f)) throw new TlsSettingsException($"TLS file {f} not found");
        X509Certificate2 certificate;
        try { certificate = X509Certificate2.CreateFromPemFile(certFile, keyFile); }
        catch (Exception e) when (e is CryptographicException or ArgumentException or IOException or UnauthorizedAccessException)
        {
            throw new TlsSettingsException($"TLS certificate {certFile} with key {keyFile}: {e.Message}");
        }
        var trusted = new X509Certificate2Collection();
        try
        {
            if (settings.CaFile is { Length: > 0 } ca) trusted.ImportFromPemFile(ca);
            else trusted.Add(X509CertificateLoader.LoadCertificate(certificate.RawData));
        }
        catch (Exception e) when (e is CryptographicException or IOException or UnauthorizedAccessException) { throw new TlsSettingsException($"TLS CA file {settings.CaFile}: {e.Message}"); }
        if (trusted.Count == 0) throw new TlsSettingsException($"TLS CA file {settings.CaFile} holds no certificate");
        return new TlsCertificates(certificate, trusted);
    }

    /// <summary>Mutual TLS options: present our certificate, require the remote's, accept it only if it chains to <see cref="Trusted"/>.</summary>
    public void Configure(TlsOptions options)
    {
        options.LocalCertificate = Certificate;
        options.RemoteCertificateMode = RemoteCertificateMode.RequireCertificate;
        options.ClientCertificateMode = RemoteCertificateMode.RequireCertificate;
        options.RemoteCertificateValidation = (certificate, _, errors) => certificate is not null && ChainsToTrusted(certificate)
            && (errors & ~(SslPolicyErrors.RemoteCertificateNameMismatch | SslPolicyErrors.RemoteCertificateChainErrors)) == SslPolicyErrors.None;
    }

    private bool ChainsToTrusted(X509Certificate2 certificate)
    {
        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.CustomTrustStore.AddRange(Trusted);
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        // Either side may be server or client of a connection: the certificate must serve both.
        chain.ChainPolicy.ApplicationPolicy.Add(new Oid("1.3.6.1.5.5.7.3.1")); // serverAuth
        chain.ChainPolicy.ApplicationPolicy.Add(new Oid("1.3.6.1.5.5.7.3.2")); // clientAuth
        return chain.Build(certificate);
    }
}

public static class InfluenceTlsExtensions
{
    public static ISiloBuilder UseInfluenceTls(this ISiloBuilder silo, TlsCertificates tls) => silo.UseTls(tls.Certificate, tls.Configure);

    public static IClientBuilder UseInfluenceTls(this IClientBuilder client, TlsCertificates tls) => client.UseTls(tls.Certificate, tls.Configure);
}
