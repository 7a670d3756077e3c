using System.Net;
using Influence.Silo;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Hosting;

// A standalone silo on this machine: localhost clustering, the first silo is the primary.
//   influence-silo --Silo:SiloPort=11111 --Silo:GatewayPort=30000 --Silo:PrimaryPort=11111 --Influence:StoreRoot=/tmp/store
var builder = Host.CreateApplicationBuilder(args);
var siloPort = builder.Configuration.GetValue("Silo:SiloPort", 11111);
var gatewayPort = builder.Configuration.GetValue("Silo:GatewayPort", 30000);
var primaryPort = builder.Configuration.GetValue("Silo:PrimaryPort", 11111);
builder.UseOrleans(silo =>
{
    silo.UseLocalhostClustering(siloPort, gatewayPort, new IPEndPoint(IPAddress.Loopback, primaryPort));
    silo.AddInfluence(o => builder.Configuration.GetSection("Influence").Bind(o));
});
await builder.Build().RunAsync();
