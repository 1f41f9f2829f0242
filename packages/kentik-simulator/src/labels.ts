/**
 * Kentik's portal names for the dimensions (what Data Explorer shows as "Group by"), so chart
 * titles read "Top 8 Destination IP/CIDR", not the API code "IP_dst".
 */
export const DIMENSION_LABELS: Record<string, string> = {
  Traffic: 'Total',
  AS_src: 'Source AS Number',
  AS_dst: 'Destination AS Number',
  Geography_src: 'Source Country',
  Geography_dst: 'Destination Country',
  InterfaceID_src: 'Source Interface',
  InterfaceID_dst: 'Destination Interface',
  Port_src: 'Source Port Number',
  Port_dst: 'Destination Port Number',
  IP_src: 'Source IP/CIDR',
  IP_dst: 'Destination IP/CIDR',
  Proto: 'Protocol',
  src_eth_mac: 'Source MAC Address',
  dst_eth_mac: 'Destination MAC Address',
  VLAN_src: 'Source VLAN',
  VLAN_dst: 'Destination VLAN',
  TopFlow: 'Full Flow',
  TopFlowsIP: 'Full Flow (IPs)',
  ASTopTalkers: 'AS Top Talkers',
  InterfaceTopTalkers: 'Interface Top Talkers',
  PortPortTalkers: 'Port Top Talkers',
  RegionTopTalkers: 'Region Top Talkers',
  src_geo_region: 'Source Region',
  src_geo_city: 'Source City',
  dst_geo_region: 'Destination Region',
  dst_geo_city: 'Destination City',
  i_device_id: 'Device',
  i_device_site_name: 'Site',
  i_trf_origination: 'Traffic Origination',
  i_trf_termination: 'Traffic Termination',
  src_route_prefix_len: 'Source Route Prefix/LEN',
  src_route_length: 'Source AS Path Length',
  src_bgp_community: 'Source BGP Community',
  src_bgp_aspath: 'Source BGP AS Path',
  src_nexthop_ip: 'Source Next Hop IP/CIDR',
  src_nexthop_asn: 'Source Next Hop AS Number',
  src_second_asn: 'Source 2nd Hop AS Number',
  src_third_asn: 'Source 3rd Hop AS Number',
  src_proto_port: 'Source Protocol:Port',
  dst_route_prefix_len: 'Destination Route Prefix/LEN',
  dst_route_length: 'Destination AS Path Length',
  dst_bgp_community: 'Destination BGP Community',
  dst_bgp_aspath: 'Destination BGP AS Path',
  dst_nexthop_ip: 'Destination Next Hop IP/CIDR',
  dst_nexthop_asn: 'Destination Next Hop AS Number',
  dst_second_asn: 'Destination 2nd Hop AS Number',
  dst_third_asn: 'Destination 3rd Hop AS Number',
  dst_proto_port: 'Destination Protocol:Port',
  inet_family: 'INET Family',
  TOS: 'ToS',
  tcp_flags: 'TCP Flags',
};

/** The portal label of a dimension; custom dimensions (c_…) as "Custom: name". */
export function dimensionLabel(d: string): string {
  const known = DIMENSION_LABELS[d];
  if (known) return known;
  if (d.startsWith('c_')) return `Custom: ${d.slice(2)}`;
  return d;
}
